#include "registry/errors.h"

#include "util/json.h"

int registry_error_body(struct buf *out, const char *code, const char *message)
{
    int r = buf_append(out, "{\"errors\":[{\"code\":", 19);
    if (!r)
        r = json_put_string(out, code);
    if (!r)
        r = buf_append(out, ",\"message\":", 11);
    if (!r)
        r = json_put_string(out, message);
    if (!r)
        r = buf_append(out, ",\"detail\":null}]}\n", 18);
    return r;
}
