/* json_path.h - where a field named by a path ("links[1].rate_bps") sits
 * in a JSON document's text. jansson keeps no positions for values, so
 * config errors find their line here, from the text the config was parsed
 * from. Pure code over a buffer. */
#ifndef QKM_PROTO_JSON_PATH_H
#define QKM_PROTO_JSON_PATH_H

#include <stddef.h>

/* Returns the 1-based line of the deepest part of path found in text: the
 * line of the object key for ".key", of the element's first character for
 * "[i]", and of the document's first value for "" (the root). A field that
 * is absent gives the line of the nearest enclosing key or element that
 * exists, so "tls.ca" for a "tls" object without "ca" gives the line of
 * "tls". Path grammar: KEY? ("." KEY | "[" DIGITS "]")*, keys compared with
 * the raw text between the quotes. Meant for text jansson accepted; on any
 * other text it still returns a line within it (or 1), never reads past
 * len. */
unsigned qkm_json_path_line(const char *text, size_t len, const char *path);

#endif
