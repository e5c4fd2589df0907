/* Error bodies in the distribution spec's format. */
#ifndef REGCACHE_REGISTRY_ERRORS_H
#define REGCACHE_REGISTRY_ERRORS_H

#include "util/buf.h"

/* Appends {"errors":[{"code":code,"message":message,"detail":null}]} and a newline. */
int registry_error_body(struct buf *out, const char *code, const char *message);

#endif
