/* Read-only mapping of a whole model file, shared by the GGUF and safetensors
 * readers. */
#include "model/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int model_map_file(const char *path, void **map, size_t *n, model_err *err)
{
  struct stat st;
  *map = NULL;
  *n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return model_fail(err, e == ENOENT ? MODEL_ENOENT : MODEL_EIO, "%s: %s", path, strerror(e));
  }
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return model_fail(err, MODEL_EIO, "%s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > SIZE_MAX) {
    close(fd);
    return model_fail(err, MODEL_EINVAL, "%s: not a regular file of a mappable size", path);
  }
  size_t size = (size_t)st.st_size;
  if (size > 0) {
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      return model_fail(err, MODEL_EIO, "%s: mmap: %s", path, strerror(e));
    }
    *map = m;
  }
  close(fd);
  *n = size;
  return 0;
}
