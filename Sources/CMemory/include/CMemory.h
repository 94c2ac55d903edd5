#ifndef CMEMORY_H
#define CMEMORY_H

#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>
#endif

/// Fixes glibc's mmap threshold (blocks at least this large are mapped on their own and returned to the
/// system when freed), switching off the dynamic adjustment that otherwise keeps freed large blocks on the
/// heap. Returns 1 on success, 0 where there is no such setting.
static inline int cmemory_set_mmap_threshold(int bytes) {
#if defined(__linux__) && defined(__GLIBC__)
    return mallopt(M_MMAP_THRESHOLD, bytes);
#else
    (void)bytes;
    return 0;
#endif
}

#endif
