/* json_path.c - the line of a JSON path in a document's text (json_path.h):
 * a scanner that only skips values and counts newlines. It needs no
 * escapes decoded and no numbers parsed: it only has to find where tokens
 * start and end. */
#include "proto/json_path.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct scan {
	const char *p, *end;
	unsigned line;
};

static void ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n')) {
		if (*s->p == '\n')
			s->line++;
		s->p++;
	}
}

static bool ends_literal(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == ',' || ch == ':' ||
	       ch == ']' || ch == '}';
}

static bool at(struct scan *s, char ch)
{
	ws(s);
	return s->p < s->end && *s->p == ch;
}

/* A string at s->p: its raw contents into *b, *n (escapes left as they
 * are); 0, or -1 if s->p is not at a terminated string. JSON strings hold
 * no raw newline, so no line is counted inside. */
static int str(struct scan *s, const char **b, size_t *n)
{
	if (!at(s, '"'))
		return -1;
	const char *start = ++s->p;
	while (s->p < s->end && *s->p != '"')
		s->p += *s->p == '\\' && s->p + 1 < s->end ? 2 : 1;
	if (s->p >= s->end)
		return -1;
	*b = start;
	*n = (size_t)(s->p - start);
	s->p++;
	return 0;
}

/* Skips one value (object, array, string or literal); 0 or -1 at the end
 * of the text. Every pass consumes at least one byte. */
static int skip(struct scan *s)
{
	int depth = 0;
	do {
		ws(s);
		if (s->p >= s->end)
			return -1;
		const char *b;
		size_t n;
		switch (*s->p) {
		case '"':
			if (str(s, &b, &n))
				return -1;
			break;
		case '{':
		case '[':
			depth++;
			s->p++;
			break;
		case '}':
		case ']':
			depth--;
			s->p++;
			break;
		case ',':
		case ':':
			s->p++;
			break;
		default: /* number, true, false, null: up to the next delimiter */
			do
				s->p++;
			while (s->p < s->end && !ends_literal(*s->p));
		}
	} while (depth > 0);
	return 0;
}

/* Moves s into the member key (n bytes) of the object at s->p, to its
 * value; *line is set to the key's line. 0, or -1 if absent. */
static int member(struct scan *s, const char *key, size_t n, unsigned *line)
{
	if (!at(s, '{'))
		return -1;
	s->p++;
	while (!at(s, '}')) {
		const char *b;
		size_t bn;
		unsigned kl = s->line;
		if (str(s, &b, &bn) || !at(s, ':'))
			return -1;
		s->p++;
		if (bn == n && memcmp(b, key, n) == 0) {
			*line = kl;
			return 0;
		}
		if (skip(s))
			return -1;
		if (at(s, ','))
			s->p++;
		else if (!at(s, '}'))
			return -1;
	}
	return -1;
}

/* Moves s to element idx of the array at s->p; *line is set to its line.
 * 0, or -1 if the array is shorter. */
static int element(struct scan *s, unsigned long idx, unsigned *line)
{
	if (!at(s, '['))
		return -1;
	s->p++;
	for (unsigned long i = 0; !at(s, ']'); i++) {
		if (i == idx) {
			*line = s->line;
			return 0;
		}
		if (skip(s))
			return -1;
		if (at(s, ','))
			s->p++;
		else
			return -1;
	}
	return -1;
}

unsigned qkm_json_path_line(const char *text, size_t len, const char *path)
{
	struct scan s = {text, text + len, 1};
	ws(&s);
	unsigned best = s.line;
	const char *q = path;
	while (*q) {
		if (*q == '[') {
			char *e;
			unsigned long idx = strtoul(q + 1, &e, 10);
			if (e == q + 1 || *e != ']' || element(&s, idx, &best))
				break;
			q = e + 1;
		} else {
			if (*q == '.')
				q++;
			size_t n = strcspn(q, ".[");
			if (n == 0 || member(&s, q, n, &best))
				break;
			q += n;
		}
	}
	return best;
}
