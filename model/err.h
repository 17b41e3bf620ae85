/* model errors: functions return 0 or a negative MODEL_E* code and fill a
 * model_err with a message naming the file, tensor or key at fault. The codes
 * have the same values as zo's ZO_E* (zo/err.h), so cli/ maps both alike.
 * Nothing in model/ prints or exits. */
#ifndef ZOTUNE_MODEL_ERR_H
#define ZOTUNE_MODEL_ERR_H

#include <stddef.h>

enum {
  MODEL_OK = 0,
  MODEL_EINVAL = -1,    /* bad argument, unsupported dtype or architecture */
  MODEL_ECORRUPT = -2,  /* a file fails validation */
  MODEL_EMISMATCH = -3, /* a file that does not fit (missing tensor, wrong shape) */
  MODEL_ENOENT = -4,
  MODEL_EIO = -5,
  MODEL_ENOMEM = -6,
  MODEL_EINTERNAL = -7
};

typedef struct model_err {
  int code;
  char msg[512];
} model_err;

/* Sets err (when non-NULL) and returns code. */
int model_fail(model_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Maps the regular file at path read-only (MAP_PRIVATE): *map is NULL for an
 * empty file. Errors name the path. The caller munmaps (*map, *n). */
int model_map_file(const char *path, void **map, size_t *n, model_err *err);

#endif
