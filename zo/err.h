/* zo errors: library functions return 0 or a negative ZO_E* code and, when
 * given a zo_err, fill it with a message naming what and where. Nothing in
 * libzotune prints or exits. A zo_err is a plain value owned by the caller. */
#ifndef ZOTUNE_ZO_ERR_H
#define ZOTUNE_ZO_ERR_H

enum {
  ZO_OK = 0,
  ZO_EINVAL = -1,    /* bad argument or configuration (user error) */
  ZO_ECORRUPT = -2,  /* a file or message fails validation (user error) */
  ZO_EMISMATCH = -3, /* a log, config or model from another run (user error) */
  ZO_ENOENT = -4,    /* a file that must exist does not (user error) */
  ZO_EIO = -5,       /* the operating system failed us */
  ZO_ENOMEM = -6,
  ZO_EINTERNAL = -7
};

typedef struct zo_err {
  int code;
  char msg[512];
} zo_err;

/* Sets err (when non-NULL) and returns code, for `return zo_fail(...)`. */
int zo_fail(zo_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True for codes that mean the user's input is at fault (exit status 1). */
int zo_err_is_user(int code);

#endif
