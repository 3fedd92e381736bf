/* The wire guard's stanza reader, compiled: gateway/proxy/stanzas.py's reading of one element a
 * client sent, with expat's callbacks in C instead of Python.
 *
 * It reads exactly as stanzas.py's `_Reader` does (that module is its specification, and
 * tests/unit/test_stanza_reader.py holds the two to the same answers): the same expat set up the
 * same way (UTF-8 only, namespaces split by a space, no DTD, so no entity declared, expanded or
 * fetched; no comment, processing instruction or XML declaration), the top element and its
 * direct children looked at, deeper ones only counted. It links the system's libexpat, the one
 * prosody's parser (lua-expat) uses too.
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

enum kind { KIND_OTHER = 0, KIND_CHAT = 1, KIND_JSON = 2 };
enum stop { STOP_NONE = 0, STOP_RESTRICTED, STOP_POLICY, STOP_MALFORMED, STOP_ERROR };

/* One parser kept for the next element (XML_ParserReset is cheaper than a new parser), and a
 * hash salt for expat's tables drawn once per process (left to expat, it would read the kernel's
 * random source for every parser). */
static XML_Parser kept_parser;
static int kept_busy;
static unsigned long hash_salt;

/* Interned once: the conditions and the namespace a stanza without one stands in. */
static PyObject *s_not_well_formed, *s_restricted_xml, *s_policy_violation, *s_client, *s_empty;

typedef struct {
    XML_Parser parser;
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
    /* Calls of the text callback, and their bytes. */
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
    XML_StopParser(r->parser, XML_FALSE);
}

/* "<namespace> <local>" (or "<local>") split at the last separator, as str.rpartition. */
static const char *local_part(const char *name, Py_ssize_t *namespace_length) {
    const char *separator = strrchr(name, SEPARATOR);
    if (separator == NULL) {
        *namespace_length = 0;
        return name;
    }
    *namespace_length = separator - name;
    return separator + 1;
}

static PyObject *attributes_dict(const XML_Char **atts) {
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (; atts[0] != NULL; atts += 2) {
        PyObject *key = PyUnicode_DecodeUTF8(atts[0], (Py_ssize_t)strlen(atts[0]), "strict");
        if (key == NULL) {
            Py_DECREF(dict);
            return NULL;
        }
        PyObject *value = PyUnicode_DecodeUTF8(atts[1], (Py_ssize_t)strlen(atts[1]), "strict");
        if (value == NULL || PyDict_SetItem(dict, key, value) < 0) {
            Py_DECREF(key);
            Py_XDECREF(value);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    return dict;
}

static int same(const char *text, Py_ssize_t length, const char *constant) {
    return (size_t)length == strlen(constant) && memcmp(text, constant, (size_t)length) == 0;
}

static int ends_empty_tag(Reader *r, Py_ssize_t index) {
    return index >= 2 && index <= r->raw_len && r->raw[index - 2] == '/' && r->raw[index - 1] == '>';
}

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **atts) {
    Reader *r = data;
    if (r->stop != STOP_NONE) {
        return;
    }
    long depth = ++r->depth;
    long elements = ++r->elements;
    if (depth > r->max_depth || elements > r->max_elements) {
        halt(r, STOP_POLICY);
        return;
    }
    if (depth > 2) {
        return;
    }
    Py_ssize_t namespace_length;
    const char *local = local_part(name, &namespace_length);
    PyObject *namespace;
    PyObject *local_name = PyUnicode_DecodeUTF8(local, (Py_ssize_t)strlen(local), "strict");
    if (local_name == NULL) {
        halt(r, STOP_ERROR);
        return;
    }
    PyObject *attributes = attributes_dict(atts);
    if (attributes == NULL) {
        Py_DECREF(local_name);
        halt(r, STOP_ERROR);
        return;
    }
    if (depth == 2) {
        if (r->inherited != NULL && same(name, namespace_length, r->inherited)) {
            namespace = Py_NewRef(s_client);
        } else if (namespace_length == 0) {
            namespace = Py_NewRef(s_empty);
        } else {
            namespace = PyUnicode_DecodeUTF8(name, namespace_length, "strict");
        }
        if (namespace == NULL) {
            Py_DECREF(local_name);
            Py_DECREF(attributes);
            halt(r, STOP_ERROR);
            return;
        }
        enum kind kind = KIND_OTHER;
        if (r->message) {
            if (strcmp(local, "body") == 0 || strcmp(local, "subject") == 0) {
                kind = KIND_CHAT;
                r->has_chat = 1;
            } else if (strcmp(local, "json-message") == 0) {
                kind = KIND_JSON;
                r->has_json = 1;
            }
        }
        Py_XSETREF(r->child_namespace, namespace);
        Py_XSETREF(r->child_name, local_name);
        Py_XSETREF(r->child_attributes, attributes);
        r->child_start = (Py_ssize_t)XML_GetCurrentByteIndex(r->parser);
        r->child_texts = r->texts;
        r->child_elements = elements;
        r->child_kind = kind;
        return;
    }
    /* depth 1 */
    if (namespace_length == 0) {
        r->inherited = "";
        namespace = Py_NewRef(s_client);
    } else if (same(name, namespace_length, HTTPBIND)) {
        r->inherited = HTTPBIND;
        namespace = Py_NewRef(s_client);
    } else {
        r->inherited = NULL;
        namespace = PyUnicode_DecodeUTF8(name, namespace_length, "strict");
        if (namespace == NULL) {
            Py_DECREF(local_name);
            Py_DECREF(attributes);
            halt(r, STOP_ERROR);
            return;
        }
    }
    r->message = (r->inherited != NULL || same(name, namespace_length, CLIENT))
                 && strcmp(local, "message") == 0;
    Py_XSETREF(r->namespace, namespace);
    Py_XSETREF(r->name, local_name);
    Py_XSETREF(r->attributes, attributes);
    r->start_index = (Py_ssize_t)XML_GetCurrentByteIndex(r->parser);
}

static void XMLCALL on_end(void *data, const XML_Char *name) {
    (void)name;
    Reader *r = data;
    if (r->stop != STOP_NONE) {
        return;
    }
    long depth = r->depth--;
    if (depth == 2) {
        Py_ssize_t index = (Py_ssize_t)XML_GetCurrentByteIndex(r->parser);
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
        Py_ssize_t index = (Py_ssize_t)XML_GetCurrentByteIndex(r->parser);
        if (r->elements == 1 && r->texts == 0 && ends_empty_tag(r, index)) {
            r->empty_end = index;
        } else {
            r->close = index;
        }
    }
}

static void XMLCALL on_text(void *data, const XML_Char *text, int length) {
    Reader *r = data;
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
    memcpy(r->json + r->json_length, text, (size_t)length);
    r->json_length += length;
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

static void XMLCALL on_comment(void *data, const XML_Char *text) {
    (void)text;
    halt(data, STOP_RESTRICTED);
}

static void XMLCALL on_instruction(void *data, const XML_Char *target, const XML_Char *text) {
    (void)target, (void)text;
    halt(data, STOP_RESTRICTED);
}

static void XMLCALL on_declaration(void *data, const XML_Char *version, const XML_Char *encoding,
                                   int standalone) {
    (void)version, (void)encoding, (void)standalone;
    halt(data, STOP_RESTRICTED);
}

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

static int is_plain_tuple_subclass(PyTypeObject *type) {
    return PyType_IsSubtype(type, &PyTuple_Type) && type->tp_basicsize == PyTuple_Type.tp_basicsize
           && type->tp_itemsize == PyTuple_Type.tp_itemsize && type->tp_dictoffset == 0;
}

static PyObject *read_with_expat(PyObject *const *args, Py_ssize_t nargs) {
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
    Reader r = {0};
    r.raw = PyBytes_AS_STRING(raw);
    r.raw_len = length;
    r.max_depth = max_depth;
    r.max_elements = max_elements;
    r.close = -1;
    r.child_type = child_type;
    r.children = PyList_New(0);
    if (r.children == NULL) {
        return NULL;
    }
    if (kept_parser != NULL && !kept_busy && XML_ParserReset(kept_parser, "UTF-8")) {
        /* (Busy only if an object's finaliser, run by an allocation below, read a stanza.) */
        kept_busy = 1;
        r.parser = kept_parser;
    } else {
        r.parser = XML_ParserCreateNS("UTF-8", SEPARATOR);
        if (r.parser == NULL) {
            reader_clear(&r);
            return PyErr_NoMemory();
        }
        if (kept_parser == NULL) {
            kept_parser = r.parser;
            kept_busy = 1;
        }
    }
    XML_SetHashSalt(r.parser, hash_salt);
    XML_SetUserData(r.parser, &r);
    XML_SetParamEntityParsing(r.parser, XML_PARAM_ENTITY_PARSING_NEVER);
    XML_SetElementHandler(r.parser, on_start, on_end);
    XML_SetCharacterDataHandler(r.parser, on_text);
    XML_SetStartDoctypeDeclHandler(r.parser, on_doctype);
    XML_SetEntityDeclHandler(r.parser, on_entity);
    XML_SetUnparsedEntityDeclHandler(r.parser, on_unparsed);
    XML_SetNotationDeclHandler(r.parser, on_notation);
    XML_SetExternalEntityRefHandler(r.parser, on_external);
    XML_SetCommentHandler(r.parser, on_comment);
    XML_SetProcessingInstructionHandler(r.parser, on_instruction);
    XML_SetXmlDeclHandler(r.parser, on_declaration);

    enum XML_Status status = XML_Parse(r.parser, r.raw, (int)length, XML_TRUE);
    PyObject *result = NULL;
    if (r.stop == STOP_ERROR) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        reader_clear(&r);
        return NULL;
    }
    if (r.stop == STOP_RESTRICTED) {
        result = Py_NewRef(s_restricted_xml);
    } else if (r.stop == STOP_POLICY) {
        result = Py_NewRef(s_policy_violation);
    } else if (r.stop == STOP_MALFORMED || status != XML_STATUS_OK || r.name == NULL) {
        result = Py_NewRef(s_not_well_formed);
    }
    if (result != NULL) {
        reader_clear(&r);
        return result;
    }

    PyObject *children = PyList_AsTuple(r.children);
    PyObject *start = PyLong_FromSsize_t(r.start_index);
    PyObject *close = r.close < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(r.close);
    PyObject *empty_end = PyLong_FromSsize_t(r.empty_end);
    PyObject *body_bytes = r.has_chat ? PyLong_FromSsize_t(r.body_bytes) : Py_NewRef(Py_None);
    PyObject *text_bytes = PyLong_FromSsize_t(r.text_bytes);
    PyObject *json = r.has_json
                         ? PyUnicode_DecodeUTF8(r.json != NULL ? r.json : "", r.json_length,
                                                "strict")
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
        reader_clear(&r);
        return NULL;
    }
    PyTuple_SET_ITEM(stanza, 0, Py_NewRef(raw));
    PyTuple_SET_ITEM(stanza, 1, r.namespace);
    PyTuple_SET_ITEM(stanza, 2, r.name);
    PyTuple_SET_ITEM(stanza, 3, start);
    PyTuple_SET_ITEM(stanza, 4, r.attributes);
    PyTuple_SET_ITEM(stanza, 5, children);
    PyTuple_SET_ITEM(stanza, 6, close);
    PyTuple_SET_ITEM(stanza, 7, empty_end);
    PyTuple_SET_ITEM(stanza, 8, body_bytes);
    PyTuple_SET_ITEM(stanza, 9, text_bytes);
    PyTuple_SET_ITEM(stanza, 10, json);
    r.namespace = r.name = r.attributes = NULL;
    reader_clear(&r);
    return stanza;
}

static PyObject *reader_read(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return read_with_expat(args, nargs);
}

static PyObject *reader_read_expat(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return read_with_expat(args, nargs);
}

static PyObject *expat_version(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return PyUnicode_FromString(XML_ExpatVersion());
}

static PyMethodDef methods[] = {
    {"read", (PyCFunction)(void (*)(void))reader_read, METH_FASTCALL,
     "read(raw, stanza_type, child_type, max_depth, max_elements): one element, or the stream "
     "error condition it ends the session with."},
    {"read_expat", (PyCFunction)(void (*)(void))reader_read_expat, METH_FASTCALL,
     "read_expat(raw, stanza_type, child_type, max_depth, max_elements): as read, always by "
     "expat (the reference the tests hold read to)."},
    {"expat_version", expat_version, METH_NOARGS, "The libexpat this reader is linked with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "gateway.proxy._reader",
    "The wire guard's stanza reader, compiled (gateway/proxy/stanzas.py reads the same way).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__reader(void) {
    PyObject *os = PyImport_ImportModule("os");
    PyObject *random = os == NULL ? NULL : PyObject_CallMethod(os, "urandom", "i", (int)sizeof hash_salt);
    Py_XDECREF(os);
    if (random == NULL) {
        return NULL;
    }
    memcpy(&hash_salt, PyBytes_AS_STRING(random), sizeof hash_salt);
    Py_DECREF(random);
    hash_salt |= 1; /* expat takes 0 for "none given" */
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
