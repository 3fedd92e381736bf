/* The wire guard's stanza reader, compiled: gateway/proxy/stanzas.py's reading of one element a
 * client sent, in C.
 *
 * It reads exactly as stanzas.py's `_Reader` does (that module is its specification, and
 * tests/unit/test_stanza_reader.py holds the two to the same answers): the top element and its
 * direct children looked at, deeper ones only counted.
 *
 * Two ways to the same answer:
 * - by expat (`read_expat`), set up as stanzas.py sets it up: UTF-8 only, namespaces split by a
 *   space, no DTD (so no entity declared, expanded or fetched), no comment, processing
 *   instruction or XML declaration. It links the system's libexpat, the one prosody's parser
 *   (lua-expat) uses too. Any element at all.
 * - by a scanner for the plain shape every Jitsi client sends (`read` tries it first): ASCII names
 *   without prefixes, namespaces only as `xmlns='…'`, the five predefined entities, UTF-8 text.
 *   It accepts only what it has checked to be well-formed XML and answers what expat would; the
 *   moment it meets anything else (a prefix, a character reference, CDATA, a comment, a carriage
 *   return, whitespace in an attribute value, a non-ASCII name, an error of any kind, a limit
 *   reached) it gives up and expat reads the element from the start. So it never refuses
 *   anything itself: refusals are always expat's.
 *
 * Both report to the same few functions (`element_start`, `element_end`, `text`) which keep what
 * stanzas.py's `_Reader` keeps, with the byte offsets expat reports: a start tag's `<`; an end
 * tag's `<`, or just after an empty-element tag's `/>`.
 *
 * read(raw, stanza_type, child_type, max_depth, max_elements) returns a `stanza_type` (a
 * NamedTuple: raw, namespace, name, start, attributes, children, close, empty_end, body_bytes,
 * text_bytes, json_message) whose children are `child_type`s (namespace, name, start, end,
 * attributes), or a str: the stream error condition the element ends the session with.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <expat.h>
#include <string.h>

#define SEPARATOR ' '
#define CLIENT "jabber:client"
#define HTTPBIND "http://jabber.org/protocol/httpbind"
/* The scanner's own bounds: past them expat reads the element. */
#define SCAN_MAX_ATTRIBUTES 16
#define SCAN_MAX_DEPTH 64

enum kind { KIND_OTHER = 0, KIND_CHAT = 1, KIND_JSON = 2 };
enum stop { STOP_NONE = 0, STOP_RESTRICTED, STOP_POLICY, STOP_MALFORMED, STOP_ERROR };

/* One parser kept for the next element (XML_ParserReset is cheaper than a new parser), and a
 * hash salt for expat's tables drawn once per process (left to expat, it would read the kernel's
 * random source for every parser). */
static XML_Parser kept_parser;
static int kept_busy;
static unsigned long hash_salt;

/* Names, namespaces and attribute names recur in every stanza: the str of each is kept in a small
 * table (direct-mapped by a hash of its bytes; a clash replaces the entry), so that a Jitsi
 * client's stanza makes almost no new str but for attribute values. */
#define NAMES 512
#define NAME_BYTES 48
typedef struct {
    PyObject *text;
    Py_ssize_t length;
    char bytes[NAME_BYTES];
} Name;
static Name names[NAMES];

/* An element without attributes gets this (read-only) mapping. */
static PyObject *no_attributes;

/* Interned once: the conditions and the namespace a stanza without one stands in. */
static PyObject *s_not_well_formed, *s_restricted_xml, *s_policy_violation, *s_client, *s_empty;

typedef struct {
    XML_Parser parser; /* NULL while the scanner reads */
    const char *raw;
    Py_ssize_t raw_len;
    long max_depth;
    long max_elements;
    long depth;
    long elements;
    enum stop stop;
    /* The top element. */
    PyObject *namespace;
    PyObject *name;
    PyObject *attributes;
    Py_ssize_t start_index;
    /* The top's namespace when it stands for jabber:client ("" or httpbind), or NULL. */
    const char *inherited;
    int message;
    PyObject *children; /* list of child_type */
    Py_ssize_t close;   /* -1: none */
    Py_ssize_t empty_end;
    /* Text events, and their bytes. */
    long texts;
    Py_ssize_t text_bytes;
    /* The direct child being read. */
    PyObject *child_namespace;
    PyObject *child_name;
    PyObject *child_attributes;
    Py_ssize_t child_start;
    long child_texts;
    long child_elements;
    enum kind child_kind;
    /* A message's body/subject text (bytes) and json-message text. */
    int has_chat;
    Py_ssize_t body_bytes;
    int has_json;
    char *json;
    Py_ssize_t json_length;
    Py_ssize_t json_capacity;
    PyTypeObject *child_type;
} Reader;

static void halt(Reader *r, enum stop why) {
    if (r->stop == STOP_NONE) {
        r->stop = why;
    }
    if (r->parser != NULL) {
        XML_StopParser(r->parser, XML_FALSE);
    }
}

static int same(const char *text, Py_ssize_t length, const char *constant) {
    if (length == 0) {
        return constant[0] == '\0';
    }
    return (size_t)length == strlen(constant) && memcmp(text, constant, (size_t)length) == 0;
}

static int ends_empty_tag(Reader *r, Py_ssize_t index) {
    return index >= 2 && index <= r->raw_len && r->raw[index - 2] == '/'
           && r->raw[index - 1] == '>';
}

/* A name's str (UTF-8 `text`), new or kept. */
static PyObject *name_text(const char *text, Py_ssize_t length) {
    if (length > NAME_BYTES) {
        return PyUnicode_DecodeUTF8(text, length, "strict");
    }
    /* FNV-1a */
    unsigned int hash = 2166136261u;
    for (Py_ssize_t k = 0; k < length; k++) {
        hash = (hash ^ (unsigned char)text[k]) * 16777619u;
    }
    Name *entry = &names[hash % NAMES];
    if (entry->text != NULL && entry->length == length
        && memcmp(entry->bytes, text, (size_t)length) == 0) {
        return Py_NewRef(entry->text);
    }
    PyObject *found = PyUnicode_DecodeUTF8(text, length, "strict");
    if (found != NULL) {
        Py_XSETREF(entry->text, Py_NewRef(found));
        entry->length = length;
        memcpy(entry->bytes, text, (size_t)length);
    }
    return found;
}

/* dict[key] = value, taking both references (either NULL after a failed call): 0, or -1 with a
 * Python error set. */
static int put_item(PyObject *dict, PyObject *key, PyObject *value) {
    int failed = key == NULL || value == NULL || PyDict_SetItem(dict, key, value) < 0;
    Py_XDECREF(key);
    Py_XDECREF(value);
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ what both readers report */

/* An element starts: counted, and whether it is to be looked at (depth 1 or 2: 1; deeper: 0;
 * past a limit: -1, the reading stopped). */
static int element_begins(Reader *r) {
    if (r->stop != STOP_NONE) {
        return -1;
    }
    long depth = ++r->depth;
    long elements = ++r->elements;
    if (depth > r->max_depth || elements > r->max_elements) {
        halt(r, STOP_POLICY);
        return -1;
    }
    return depth <= 2;
}

/* The str of an element's namespace (`namespace` bytes; empty: none) as stanzas.py reports it:
 * jabber:client for a top element without one or in httpbind's (noted as what its children
 * inherit), and for a child in that same inherited namespace. */
static PyObject *namespace_text(Reader *r, const char *namespace, Py_ssize_t length) {
    if (r->depth == 1) {
        r->inherited = length == 0 ? "" : same(namespace, length, HTTPBIND) ? HTTPBIND : NULL;
        if (r->inherited != NULL) {
            return Py_NewRef(s_client);
        }
    } else if (r->inherited != NULL && same(namespace, length, r->inherited)) {
        return Py_NewRef(s_client);
    }
    return length == 0 ? Py_NewRef(s_empty) : name_text(namespace, length);
}

/* The element just begun (depth 1 or 2): its namespace (`namespace` bytes; NULL or empty: none),
 * local name, attributes (a new reference, taken) and where its start tag begins. */
static void element_start(Reader *r, const char *namespace, Py_ssize_t namespace_length,
                          const char *local, Py_ssize_t local_length, PyObject *attributes,
                          Py_ssize_t index) {
    PyObject *name = name_text(local, local_length);
    PyObject *space = name == NULL ? NULL : namespace_text(r, namespace, namespace_length);
    if (space == NULL) {
        Py_XDECREF(name);
        Py_DECREF(attributes);
        halt(r, STOP_ERROR);
        return;
    }
    if (r->depth == 2) {
        enum kind kind = KIND_OTHER;
        if (r->message) {
            if (same(local, local_length, "body") || same(local, local_length, "subject")) {
                kind = KIND_CHAT;
                r->has_chat = 1;
            } else if (same(local, local_length, "json-message")) {
                kind = KIND_JSON;
                r->has_json = 1;
            }
        }
        Py_XSETREF(r->child_namespace, space);
        Py_XSETREF(r->child_name, name);
        Py_XSETREF(r->child_attributes, attributes);
        r->child_start = index;
        r->child_texts = r->texts;
        r->child_elements = r->elements;
        r->child_kind = kind;
        return;
    }
    r->message = (r->inherited != NULL || same(namespace, namespace_length, CLIENT))
                 && same(local, local_length, "message");
    Py_XSETREF(r->namespace, space);
    Py_XSETREF(r->name, name);
    Py_XSETREF(r->attributes, attributes);
    r->start_index = index;
}

/* An element ends at `index` (expat's byte index for its end event). */
static void element_end(Reader *r, Py_ssize_t index) {
    if (r->stop != STOP_NONE) {
        return;
    }
    long depth = r->depth--;
    if (depth == 2) {
        Py_ssize_t end;
        /* expat reports an empty-element tag's end just after its `/>`, another element's at
         * the start of its end tag (see stanzas.py). */
        if (r->child_elements == r->elements && r->child_texts == r->texts
            && ends_empty_tag(r, index)) {
            end = index;
        } else {
            const char *close = NULL;
            if (index >= 0 && index < r->raw_len) {
                close = memchr(r->raw + index, '>', (size_t)(r->raw_len - index));
            }
            if (close == NULL) {
                halt(r, STOP_MALFORMED);
                return;
            }
            end = close - r->raw + 1;
        }
        PyObject *start = PyLong_FromSsize_t(r->child_start);
        PyObject *stop = PyLong_FromSsize_t(end);
        PyObject *child = NULL;
        if (start != NULL && stop != NULL) {
            child = r->child_type->tp_alloc(r->child_type, 5);
        }
        if (child == NULL) {
            Py_XDECREF(start);
            Py_XDECREF(stop);
            halt(r, STOP_ERROR);
            return;
        }
        PyTuple_SET_ITEM(child, 0, r->child_namespace);
        PyTuple_SET_ITEM(child, 1, r->child_name);
        PyTuple_SET_ITEM(child, 2, start);
        PyTuple_SET_ITEM(child, 3, stop);
        PyTuple_SET_ITEM(child, 4, r->child_attributes);
        r->child_namespace = r->child_name = r->child_attributes = NULL;
        r->child_kind = KIND_OTHER;
        int failed = PyList_Append(r->children, child);
        Py_DECREF(child);
        if (failed) {
            halt(r, STOP_ERROR);
        }
    } else if (depth == 1) {
        if (r->elements == 1 && r->texts == 0 && ends_empty_tag(r, index)) {
            r->empty_end = index;
        } else {
            r->close = index;
        }
    }
}

/* Character data, as expat reports it (entities replaced). */
static void text(Reader *r, const char *data, Py_ssize_t length) {
    if (r->stop != STOP_NONE) {
        return;
    }
    r->texts += 1;
    r->text_bytes += length;
    if (r->depth < 2 || r->child_kind == KIND_OTHER) {
        return;
    }
    if (r->child_kind == KIND_CHAT) {
        r->body_bytes += length;
        return;
    }
    if (r->json_length + length > r->json_capacity) {
        Py_ssize_t capacity = (r->json_length + length) * 2 + 64;
        char *grown = PyMem_Realloc(r->json, (size_t)capacity);
        if (grown == NULL) {
            halt(r, STOP_ERROR);
            return;
        }
        r->json = grown;
        r->json_capacity = capacity;
    }
    memcpy(r->json + r->json_length, data, (size_t)length);
    r->json_length += length;
}

/* ------------------------------------------------------------------ expat */

static PyObject *expat_attributes(const XML_Char **atts) {
    if (atts[0] == NULL) {
        return Py_NewRef(no_attributes);
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (; atts[0] != NULL; atts += 2) {
        PyObject *key = name_text(atts[0], (Py_ssize_t)strlen(atts[0]));
        PyObject *value =
            key == NULL ? NULL
                        : PyUnicode_DecodeUTF8(atts[1], (Py_ssize_t)strlen(atts[1]), "strict");
        if (put_item(dict, key, value) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **atts) {
    Reader *r = data;
    if (element_begins(r) != 1) {
        return;
    }
    /* "<namespace> <local>" (or "<local>"), split at the last separator as str.rpartition. */
    const char *separator = strrchr(name, SEPARATOR);
    const char *local = separator == NULL ? name : separator + 1;
    Py_ssize_t namespace_length = separator == NULL ? 0 : separator - name;
    PyObject *attributes = expat_attributes(atts);
    if (attributes == NULL) {
        halt(r, STOP_ERROR);
        return;
    }
    element_start(r, name, namespace_length, local, (Py_ssize_t)strlen(local), attributes,
                  (Py_ssize_t)XML_GetCurrentByteIndex(r->parser));
}

static void XMLCALL on_end(void *data, const XML_Char *name) {
    (void)name;
    Reader *r = data;
    element_end(r, (Py_ssize_t)XML_GetCurrentByteIndex(r->parser));
}

static void XMLCALL on_text(void *data, const XML_Char *data_text, int length) {
    text(data, data_text, length);
}

/* What the gate refuses where it starts (stanzas.py: xml_reading.restricted_parser). */
static void XMLCALL on_doctype(void *data, const XML_Char *name, const XML_Char *system,
                               const XML_Char *public, int internal) {
    (void)name, (void)system, (void)public, (void)internal;
    halt(data, STOP_RESTRICTED);
}

static void XMLCALL on_entity(void *data, const XML_Char *name, int parameter,
                              const XML_Char *value, int value_length, const XML_Char *base,
                              const XML_Char *system, const XML_Char *public,
                              const XML_Char *notation) {
    (void)name, (void)parameter, (void)value, (void)value_length, (void)base, (void)system,
        (void)public, (void)notation;
    halt(data, STOP_RESTRICTED);
}

static void XMLCALL on_unparsed(void *data, const XML_Char *name, const XML_Char *base,
                                const XML_Char *system, const XML_Char *public,
                                const XML_Char *notation) {
    (void)name, (void)base, (void)system, (void)public, (void)notation;
    halt(data, STOP_RESTRICTED);
}

static void XMLCALL on_notation(void *data, const XML_Char *name, const XML_Char *base,
                                const XML_Char *system, const XML_Char *public) {
    (void)name, (void)base, (void)system, (void)public;
    halt(data, STOP_RESTRICTED);
}

static int XMLCALL on_external(XML_Parser parser, const XML_Char *context, const XML_Char *base,
                               const XML_Char *system, const XML_Char *public) {
    (void)context, (void)base, (void)system, (void)public;
    Reader *r = XML_GetUserData(parser);
    if (r->stop == STOP_NONE) {
        r->stop = STOP_RESTRICTED;
    }
    return XML_STATUS_ERROR;
}

static void XMLCALL on_comment(void *data, const XML_Char *comment) {
    (void)comment;
    halt(data, STOP_RESTRICTED);
}

static void XMLCALL on_instruction(void *data, const XML_Char *target, const XML_Char *body) {
    (void)target, (void)body;
    halt(data, STOP_RESTRICTED);
}

static void XMLCALL on_declaration(void *data, const XML_Char *version, const XML_Char *encoding,
                                   int standalone) {
    (void)version, (void)encoding, (void)standalone;
    halt(data, STOP_RESTRICTED);
}

/* Reads r->raw with expat; returns 0, or -1 with a Python error set. */
static int read_by_expat(Reader *r) {
    if (kept_parser != NULL && !kept_busy && XML_ParserReset(kept_parser, "UTF-8")) {
        /* (Busy only if an object's finaliser, run by an allocation below, read a stanza.) */
        kept_busy = 1;
        r->parser = kept_parser;
    } else {
        r->parser = XML_ParserCreateNS("UTF-8", SEPARATOR);
        if (r->parser == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (kept_parser == NULL) {
            kept_parser = r->parser;
            kept_busy = 1;
        }
    }
    XML_Parser parser = r->parser;
    XML_SetHashSalt(parser, hash_salt);
    XML_SetUserData(parser, r);
    XML_SetParamEntityParsing(parser, XML_PARAM_ENTITY_PARSING_NEVER);
    XML_SetElementHandler(parser, on_start, on_end);
    XML_SetCharacterDataHandler(parser, on_text);
    XML_SetStartDoctypeDeclHandler(parser, on_doctype);
    XML_SetEntityDeclHandler(parser, on_entity);
    XML_SetUnparsedEntityDeclHandler(parser, on_unparsed);
    XML_SetNotationDeclHandler(parser, on_notation);
    XML_SetExternalEntityRefHandler(parser, on_external);
    XML_SetCommentHandler(parser, on_comment);
    XML_SetProcessingInstructionHandler(parser, on_instruction);
    XML_SetXmlDeclHandler(parser, on_declaration);
    if (XML_Parse(parser, r->raw, (int)r->raw_len, XML_TRUE) != XML_STATUS_OK
        && r->stop == STOP_NONE) {
        r->stop = STOP_MALFORMED;
    }
    return 0;
}

/* ------------------------------------------------------------------ the scanner */

/* Gives up: expat reads the element instead. */
#define GIVE_UP 1

typedef struct {
    const char *name;
    Py_ssize_t name_length;
    const char *value; /* as written, between the quotes */
    Py_ssize_t value_length;
    int entities; /* the value holds an entity reference */
} Attribute;

typedef struct {
    const char *name;
    Py_ssize_t length;
} Open;

static int is_name_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(unsigned char c) {
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static int is_space(unsigned char c) {
    /* No carriage return: expat turns it into a line feed, which the scanner does not. */
    return c == ' ' || c == '\t' || c == '\n';
}

/* The length of the UTF-8 sequence at `s` (s[0] >= 0x80), if it encodes a character XML allows
 * and expat takes as it is; 0 otherwise (invalid, overlong, a surrogate, U+FFFE, U+FFFF, or one
 * of U+0080-U+009F, which the scanner leaves to expat). */
static Py_ssize_t utf8_character(const unsigned char *s, Py_ssize_t left) {
    unsigned char c = s[0];
    if (c < 0xC2) {
        return 0;
    }
    if (c < 0xE0) {
        if (left < 2 || (s[1] & 0xC0) != 0x80 || (c == 0xC2 && s[1] < 0xA0)) {
            return 0;
        }
        return 2;
    }
    if (c < 0xF0) {
        if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) {
            return 0;
        }
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)
            || (c == 0xEF && s[1] == 0xBF && s[2] >= 0xBE)) {
            return 0;
        }
        return 3;
    }
    if (c < 0xF5) {
        if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) {
            return 0;
        }
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)) {
            return 0;
        }
        return 4;
    }
    return 0;
}

/* The predefined entity reference at `s` (just after its `&`): its length up to and with the
 * `;`, and the character it stands for; 0 for anything else (character references included). */
static Py_ssize_t entity(const char *s, Py_ssize_t left, char *character) {
    if (left >= 3 && memcmp(s, "lt;", 3) == 0) {
        *character = '<';
        return 3;
    }
    if (left >= 3 && memcmp(s, "gt;", 3) == 0) {
        *character = '>';
        return 3;
    }
    if (left >= 4 && memcmp(s, "amp;", 4) == 0) {
        *character = '&';
        return 4;
    }
    if (left >= 5 && memcmp(s, "apos;", 5) == 0) {
        *character = '\'';
        return 5;
    }
    if (left >= 5 && memcmp(s, "quot;", 5) == 0) {
        *character = '"';
        return 5;
    }
    return 0;
}

/* Checks the text from `at` to the next `<` and reports it as expat would (a run, each entity
 * apart); returns where the `<` is, or -1 to give up. */
static Py_ssize_t scan_text(Reader *r, Py_ssize_t at) {
    const unsigned char *raw = (const unsigned char *)r->raw;
    Py_ssize_t length = r->raw_len;
    Py_ssize_t run = at;
    Py_ssize_t i = at;
    while (i < length) {
        unsigned char c = raw[i];
        if (c == '<') {
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '&' && c != ']') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            Py_ssize_t size = utf8_character(raw + i, length - i);
            if (size == 0) {
                return -1;
            }
            i += size;
        } else if (c == '\t' || c == '\n') {
            i++;
        } else if (c == ']') {
            /* `]]>` may not occur in text. */
            if (i + 2 < length && raw[i + 1] == ']' && raw[i + 2] == '>') {
                return -1;
            }
            i++;
        } else if (c == '&') {
            char character;
            Py_ssize_t size = entity(r->raw + i + 1, length - i - 1, &character);
            if (size == 0) {
                return -1;
            }
            if (i > run) {
                text(r, r->raw + run, i - run);
            }
            text(r, &character, 1);
            i += 1 + size;
            run = i;
        } else {
            return -1; /* a control character, DEL or a carriage return */
        }
    }
    if (i > run) {
        text(r, r->raw + run, i - run);
    }
    return i;
}

/* The attribute value from `at` (just after its opening quote) to `quote`: returns just after
 * the closing quote, or -1 to give up. */
static Py_ssize_t scan_value(Reader *r, Py_ssize_t at, unsigned char quote, int *entities) {
    const unsigned char *raw = (const unsigned char *)r->raw;
    Py_ssize_t length = r->raw_len;
    Py_ssize_t i = at;
    *entities = 0;
    while (i < length) {
        unsigned char c = raw[i];
        if (c == quote) {
            return i + 1;
        }
        if (c >= 0x20 && c < 0x7F && c != '&' && c != '<') {
            i++;
        } else if (c >= 0x80) {
            Py_ssize_t size = utf8_character(raw + i, length - i);
            if (size == 0) {
                return -1;
            }
            i += size;
        } else if (c == '&') {
            char character;
            Py_ssize_t size = entity(r->raw + i + 1, length - i - 1, &character);
            if (size == 0) {
                return -1;
            }
            *entities = 1;
            i += 1 + size;
        } else {
            /* `<`, and whitespace expat would turn into spaces. */
            return -1;
        }
    }
    return -1;
}

/* An attribute's value as expat reports it: the entities replaced. */
static PyObject *value_text(const Attribute *attribute) {
    if (!attribute->entities) {
        return PyUnicode_DecodeUTF8(attribute->value, attribute->value_length, "strict");
    }
    char *buffer = PyMem_Malloc((size_t)attribute->value_length + 1);
    if (buffer == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t out = 0;
    for (Py_ssize_t i = 0; i < attribute->value_length;) {
        char c = attribute->value[i];
        if (c == '&') {
            char character = 0;
            i += 1 + entity(attribute->value + i + 1, attribute->value_length - i - 1, &character);
            buffer[out++] = character;
        } else {
            buffer[out++] = c;
            i++;
        }
    }
    PyObject *result = PyUnicode_DecodeUTF8(buffer, out, "strict");
    PyMem_Free(buffer);
    return result;
}

static PyObject *scanned_attributes(const Attribute *attributes, int count) {
    int named = 0;
    for (int k = 0; k < count; k++) {
        named += attributes[k].name != NULL;
    }
    if (named == 0) {
        return Py_NewRef(no_attributes);
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (int k = 0; k < count; k++) {
        const Attribute *attribute = &attributes[k];
        if (attribute->name == NULL) {
            continue; /* xmlns */
        }
        PyObject *key = name_text(attribute->name, attribute->name_length);
        PyObject *value = key == NULL ? NULL : value_text(attribute);
        if (put_item(dict, key, value) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* Reads r->raw if it has the plain shape: 0 when read (r->stop may say the reading failed for
 * want of memory), GIVE_UP when expat must read it. Nothing is reported that expat would not
 * report the same way, and a give-up leaves the reader to be cleared and started again. */
static int scan(Reader *r) {
    const unsigned char *raw = (const unsigned char *)r->raw;
    Py_ssize_t length = r->raw_len;
    Open open[SCAN_MAX_DEPTH];
    Attribute attributes[SCAN_MAX_ATTRIBUTES];
    /* The top's namespace as declared (its xmlns value, as written), which its children
     * inherit. */
    const char *top_namespace = NULL;
    Py_ssize_t top_namespace_length = 0;
    int depth = 0;
    Py_ssize_t i = 0;
    if (length == 0 || raw[0] != '<') {
        return GIVE_UP;
    }
    while (i < length) {
        if (raw[i] != '<') {
            if (depth == 0) {
                return GIVE_UP; /* text outside the element */
            }
            i = scan_text(r, i);
            if (i < 0) {
                return GIVE_UP;
            }
            continue;
        }
        Py_ssize_t tag = i;
        if (i + 1 >= length) {
            return GIVE_UP;
        }
        if (raw[i + 1] == '/') {
            /* An end tag: the open element's name, whitespace, `>`. */
            if (depth == 0) {
                return GIVE_UP;
            }
            Open *element = &open[depth - 1];
            i += 2;
            if (length - i < element->length
                || memcmp(raw + i, element->name, (size_t)element->length) != 0) {
                return GIVE_UP;
            }
            i += element->length;
            while (i < length && is_space(raw[i])) {
                i++;
            }
            if (i >= length || raw[i] != '>') {
                return GIVE_UP;
            }
            i++;
            depth--;
            element_end(r, tag);
            if (r->stop != STOP_NONE) {
                return 0;
            }
            if (depth == 0) {
                break;
            }
            continue;
        }
        /* A start tag (anything else after `<`, `!` and `?` included, is expat's). */
        i++;
        if (!is_name_start(raw[i])) {
            return GIVE_UP;
        }
        const char *name = r->raw + i;
        while (i < length && is_name_char(raw[i])) {
            i++;
        }
        Py_ssize_t name_length = (r->raw + i) - name;
        int count = 0;
        int empty = 0;
        const char *namespace = NULL;
        Py_ssize_t namespace_length = 0;
        int declares = 0;
        for (;;) {
            Py_ssize_t before = i;
            while (i < length && is_space(raw[i])) {
                i++;
            }
            if (i >= length) {
                return GIVE_UP;
            }
            if (raw[i] == '>') {
                i++;
                break;
            }
            if (raw[i] == '/') {
                if (i + 1 >= length || raw[i + 1] != '>') {
                    return GIVE_UP;
                }
                i += 2;
                empty = 1;
                break;
            }
            /* An attribute: after whitespace, a name, `=` between optional whitespace, a quoted
             * value. */
            if (i == before || !is_name_start(raw[i]) || count == SCAN_MAX_ATTRIBUTES) {
                return GIVE_UP;
            }
            Attribute *attribute = &attributes[count];
            attribute->name = r->raw + i;
            while (i < length && is_name_char(raw[i])) {
                i++;
            }
            attribute->name_length = (r->raw + i) - attribute->name;
            while (i < length && is_space(raw[i])) {
                i++;
            }
            if (i >= length || raw[i] != '=') {
                return GIVE_UP;
            }
            i++;
            while (i < length && is_space(raw[i])) {
                i++;
            }
            if (i >= length || (raw[i] != '\'' && raw[i] != '"')) {
                return GIVE_UP;
            }
            unsigned char quote = raw[i];
            attribute->value = r->raw + i + 1;
            i = scan_value(r, i + 1, quote, &attribute->entities);
            if (i < 0) {
                return GIVE_UP;
            }
            attribute->value_length = (r->raw + i - 1) - attribute->value;
            for (int k = 0; k < count; k++) {
                const Attribute *other = &attributes[k];
                const char *other_name = other->name != NULL ? other->name : "xmlns";
                Py_ssize_t other_length = other->name != NULL ? other->name_length : 5;
                if (other_length == attribute->name_length
                    && memcmp(other_name, attribute->name, (size_t)other_length) == 0) {
                    return GIVE_UP; /* a duplicate */
                }
            }
            if (same(attribute->name, attribute->name_length, "xmlns")) {
                /* A default namespace declaration: not an attribute. The XML and xmlns
                 * namespaces cannot be the default one: any W3C namespace is expat's to judge.
                 */
                if (attribute->entities || (attribute->value_length >= 18
                                            && memcmp(attribute->value, "http://www.w3.org/", 18)
                                                   == 0)) {
                    return GIVE_UP;
                }
                /* Printable ASCII only: expat refuses a namespace holding the separator (a
                 * space), and judges the rest. */
                for (Py_ssize_t k = 0; k < attribute->value_length; k++) {
                    unsigned char c = (unsigned char)attribute->value[k];
                    if (c <= 0x20 || c >= 0x7F) {
                        return GIVE_UP;
                    }
                }
                namespace = attribute->value;
                namespace_length = attribute->value_length;
                declares = 1;
                attribute->name = NULL;
            }
            count++;
        }
        if (depth == SCAN_MAX_DEPTH) {
            return GIVE_UP;
        }
        if (depth == 0 && r->elements > 0) {
            return GIVE_UP; /* a second top element */
        }
        open[depth].name = name;
        open[depth].length = name_length;
        depth++;
        int looked_at = element_begins(r);
        if (looked_at < 0) {
            /* Past a limit: expat stops there too, but let it say so. */
            return GIVE_UP;
        }
        if (depth == 1) {
            top_namespace = declares ? namespace : NULL;
            top_namespace_length = declares ? namespace_length : 0;
        } else if (depth == 2 && !declares) {
            namespace = top_namespace;
            namespace_length = top_namespace_length;
        }
        if (looked_at) {
            PyObject *dict = scanned_attributes(attributes, count);
            if (dict == NULL) {
                halt(r, STOP_ERROR);
                return 0;
            }
            element_start(r, namespace, namespace_length, name, name_length, dict, tag);
            if (r->stop != STOP_NONE) {
                return 0;
            }
        }
        if (empty) {
            depth--;
            element_end(r, i);
            if (r->stop != STOP_NONE) {
                return 0;
            }
            if (depth == 0) {
                break;
            }
        }
    }
    if (depth != 0 || i != length || r->elements == 0) {
        return GIVE_UP; /* unclosed, or something after the element */
    }
    return 0;
}

/* ------------------------------------------------------------------ the answer */

static void reader_clear(Reader *r) {
    Py_CLEAR(r->namespace);
    Py_CLEAR(r->name);
    Py_CLEAR(r->attributes);
    Py_CLEAR(r->children);
    Py_CLEAR(r->child_namespace);
    Py_CLEAR(r->child_name);
    Py_CLEAR(r->child_attributes);
    PyMem_Free(r->json);
    r->json = NULL;
    if (r->parser != NULL) {
        if (r->parser == kept_parser) {
            kept_busy = 0;
        } else {
            XML_ParserFree(r->parser);
        }
        r->parser = NULL;
    }
}

/* A reader for `raw`, ready to read; 0, or -1 with a Python error set. */
static int reader_start(Reader *r, const char *raw, Py_ssize_t length, long max_depth,
                        long max_elements, PyTypeObject *child_type) {
    memset(r, 0, sizeof *r);
    r->raw = raw;
    r->raw_len = length;
    r->max_depth = max_depth;
    r->max_elements = max_elements;
    r->close = -1;
    r->child_type = child_type;
    r->children = PyList_New(0);
    return r->children == NULL ? -1 : 0;
}

/* What the reading came to: the stanza, a condition, or NULL with a Python error set. The reader
 * is cleared. */
static PyObject *reader_answer(Reader *r, PyObject *raw, PyTypeObject *stanza_type) {
    PyObject *result = NULL;
    if (r->stop == STOP_ERROR) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        reader_clear(r);
        return NULL;
    }
    if (r->stop == STOP_RESTRICTED) {
        result = Py_NewRef(s_restricted_xml);
    } else if (r->stop == STOP_POLICY) {
        result = Py_NewRef(s_policy_violation);
    } else if (r->stop == STOP_MALFORMED || r->name == NULL) {
        result = Py_NewRef(s_not_well_formed);
    }
    if (result != NULL) {
        reader_clear(r);
        return result;
    }
    PyObject *children = PyList_AsTuple(r->children);
    PyObject *start = PyLong_FromSsize_t(r->start_index);
    PyObject *close = r->close < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(r->close);
    PyObject *empty_end = PyLong_FromSsize_t(r->empty_end);
    PyObject *body_bytes = r->has_chat ? PyLong_FromSsize_t(r->body_bytes) : Py_NewRef(Py_None);
    PyObject *text_bytes = PyLong_FromSsize_t(r->text_bytes);
    PyObject *json = r->has_json ? PyUnicode_DecodeUTF8(r->json != NULL ? r->json : "",
                                                        r->json_length, "strict")
                                 : Py_NewRef(Py_None);
    PyObject *stanza = NULL;
    if (children != NULL && start != NULL && close != NULL && empty_end != NULL
        && body_bytes != NULL && text_bytes != NULL && json != NULL) {
        stanza = stanza_type->tp_alloc(stanza_type, 11);
    }
    if (stanza == NULL) {
        Py_XDECREF(children);
        Py_XDECREF(start);
        Py_XDECREF(close);
        Py_XDECREF(empty_end);
        Py_XDECREF(body_bytes);
        Py_XDECREF(text_bytes);
        Py_XDECREF(json);
        reader_clear(r);
        return NULL;
    }
    PyTuple_SET_ITEM(stanza, 0, Py_NewRef(raw));
    PyTuple_SET_ITEM(stanza, 1, r->namespace);
    PyTuple_SET_ITEM(stanza, 2, r->name);
    PyTuple_SET_ITEM(stanza, 3, start);
    PyTuple_SET_ITEM(stanza, 4, r->attributes);
    PyTuple_SET_ITEM(stanza, 5, children);
    PyTuple_SET_ITEM(stanza, 6, close);
    PyTuple_SET_ITEM(stanza, 7, empty_end);
    PyTuple_SET_ITEM(stanza, 8, body_bytes);
    PyTuple_SET_ITEM(stanza, 9, text_bytes);
    PyTuple_SET_ITEM(stanza, 10, json);
    r->namespace = r->name = r->attributes = NULL;
    reader_clear(r);
    return stanza;
}

static int is_plain_tuple_subclass(PyTypeObject *type) {
    return PyType_IsSubtype(type, &PyTuple_Type) && type->tp_basicsize == PyTuple_Type.tp_basicsize
           && type->tp_itemsize == PyTuple_Type.tp_itemsize && type->tp_dictoffset == 0;
}

static PyObject *read_element(PyObject *const *args, Py_ssize_t nargs, int scanning) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "read(raw, stanza_type, child_type, max_depth, max_elements)");
        return NULL;
    }
    PyObject *raw = args[0];
    if (!PyBytes_CheckExact(raw) || !PyType_Check(args[1]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "read: raw must be bytes, the others types");
        return NULL;
    }
    PyTypeObject *stanza_type = (PyTypeObject *)args[1];
    PyTypeObject *child_type = (PyTypeObject *)args[2];
    if (!is_plain_tuple_subclass(stanza_type) || !is_plain_tuple_subclass(child_type)) {
        PyErr_SetString(PyExc_TypeError, "read: the types must be NamedTuples");
        return NULL;
    }
    long max_depth = PyLong_AsLong(args[3]);
    long max_elements = PyLong_AsLong(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t length = PyBytes_GET_SIZE(raw);
    if (length > INT_MAX) {
        return Py_NewRef(s_policy_violation);
    }
    const char *bytes = PyBytes_AS_STRING(raw);
    if (memchr(bytes, 0x00, (size_t)length) != NULL || memchr(bytes, 0xFE, (size_t)length) != NULL
        || memchr(bytes, 0xFF, (size_t)length) != NULL) {
        /* Never in UTF-8 XML, and expat would read UTF-16 (xml_reading.foreign_bytes). */
        return Py_NewRef(s_not_well_formed);
    }
    Reader r;
    if (reader_start(&r, PyBytes_AS_STRING(raw), length, max_depth, max_elements, child_type)
        < 0) {
        return NULL;
    }
    if (scanning) {
        if (scan(&r) != GIVE_UP) {
            return reader_answer(&r, raw, stanza_type);
        }
        reader_clear(&r);
        if (reader_start(&r, PyBytes_AS_STRING(raw), length, max_depth, max_elements, child_type)
            < 0) {
            return NULL;
        }
    }
    if (read_by_expat(&r) < 0) {
        reader_clear(&r);
        return NULL;
    }
    return reader_answer(&r, raw, stanza_type);
}

/* read_text(stanza_type, child_type, max_depth, max_elements, data, max_bytes): stanzas.py's
 * parse_stanza with the condition as a str: `data` a str (encoded as UTF-8) or bytes, refused
 * past `max_bytes`. */
static PyObject *reader_read_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "read_text(stanza_type, child_type, max_depth, max_elements, data, "
                        "max_bytes)");
        return NULL;
    }
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[5]);
    if (max_bytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *data = args[4];
    PyObject *raw;
    if (PyUnicode_CheckExact(data)) {
        if (PyUnicode_GET_LENGTH(data) > max_bytes) {
            return Py_NewRef(s_policy_violation);
        }
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(data, &size);
        if (utf8 == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                return NULL;
            }
            PyErr_Clear(); /* a lone surrogate: no UTF-8 */
            return Py_NewRef(s_not_well_formed);
        }
        raw = PyBytes_FromStringAndSize(utf8, size);
        if (raw == NULL) {
            return NULL;
        }
    } else if (PyBytes_CheckExact(data)) {
        raw = Py_NewRef(data);
    } else {
        PyErr_SetString(PyExc_TypeError, "read_text: data must be str or bytes");
        return NULL;
    }
    if (PyBytes_GET_SIZE(raw) > max_bytes) {
        Py_DECREF(raw);
        return Py_NewRef(s_policy_violation);
    }
    PyObject *rest[5] = {raw, args[0], args[1], args[2], args[3]};
    PyObject *result = read_element(rest, 5, 1);
    Py_DECREF(raw);
    return result;
}

static PyObject *reader_read(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return read_element(args, nargs, 1);
}

static PyObject *reader_read_expat(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return read_element(args, nargs, 0);
}

static PyObject *expat_version(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return PyUnicode_FromString(XML_ExpatVersion());
}

static PyMethodDef methods[] = {
    {"read", (PyCFunction)(void (*)(void))reader_read, METH_FASTCALL,
     "read(raw, stanza_type, child_type, max_depth, max_elements): one element, or the stream "
     "error condition it ends the session with."},
    {"read_text", (PyCFunction)(void (*)(void))reader_read_text, METH_FASTCALL,
     "read_text(stanza_type, child_type, max_depth, max_elements, data, max_bytes): as "
     "stanzas.parse_stanza, the condition a str."},
    {"read_expat", (PyCFunction)(void (*)(void))reader_read_expat, METH_FASTCALL,
     "read_expat(raw, stanza_type, child_type, max_depth, max_elements): as read, always by "
     "expat (the reference the tests hold read to)."},
    {"expat_version", expat_version, METH_NOARGS, "The libexpat this reader is linked with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "gateway.proxy._reader",
    "The wire guard's stanza reader, compiled (gateway/proxy/stanzas.py reads the same way).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__reader(void) {
    PyObject *os = PyImport_ImportModule("os");
    PyObject *random =
        os == NULL ? NULL : PyObject_CallMethod(os, "urandom", "i", (int)sizeof hash_salt);
    Py_XDECREF(os);
    if (random == NULL) {
        return NULL;
    }
    memcpy(&hash_salt, PyBytes_AS_STRING(random), sizeof hash_salt);
    Py_DECREF(random);
    hash_salt |= 1; /* expat takes 0 for "none given" */
    PyObject *empty = PyDict_New();
    no_attributes = empty == NULL ? NULL : PyDictProxy_New(empty);
    Py_XDECREF(empty);
    if (no_attributes == NULL) {
        return NULL;
    }
    s_not_well_formed = PyUnicode_InternFromString("not-well-formed");
    s_restricted_xml = PyUnicode_InternFromString("restricted-xml");
    s_policy_violation = PyUnicode_InternFromString("policy-violation");
    s_client = PyUnicode_InternFromString(CLIENT);
    s_empty = PyUnicode_InternFromString("");
    if (s_not_well_formed == NULL || s_restricted_xml == NULL || s_policy_violation == NULL
        || s_client == NULL || s_empty == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_definition);
}
