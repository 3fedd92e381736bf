"""Data files Meetgate ships as they were published, read with `importlib.resources`.

`confusables.txt` is Unicode's confusables data for UTS #39 (Unicode Security Mechanisms),
version 17.0.0, dated 2025-07-22, byte for byte as published (taken from unicode-org/unicodetools,
`unicodetools/data/security/17.0.0/confusables.txt`; SHA-256 091c7f82fc39ef20…d13ef22a).
`admission.names.skeleton` maps look-alike characters by it. `LICENSE-Unicode.txt` is the Unicode
License V3 it is redistributed under. To move to a newer version, replace the file whole, header
and all.
"""
