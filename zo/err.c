#include "zo/err.h"

#include <stdarg.h>
#include <stdio.h>

int zo_fail(zo_err *err, int code, const char *fmt, ...)
{
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

int zo_err_is_user(int code)
{
  return code == ZO_EINVAL || code == ZO_ECORRUPT || code == ZO_EMISMATCH ||
         code == ZO_ENOENT;
}
