#ifndef CMEMORY_H
#define CMEMORY_H

#if defined(__linux__)
#include <malloc.h>
#endif

/// Fixes glibc's mmap threshold (blocks at least this large are mapped on their own and returned to the
/// system when freed), switching off the dynamic adjustment that otherwise keeps freed large blocks on the
/// heap. Returns 1 on success, 0 where there is no such setting.
static inline int cmemory_set_mmap_threshold(int bytes) {
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD)
    return mallopt(M_MMAP_THRESHOLD, bytes);
#else
    (void)bytes;
    return 0;
#endif
}

/// Returns free memory inside glibc's arenas to the system (it madvises free pages away), where freed blocks
/// that sit between live ones would otherwise stay resident until something reuses them.
static inline void cmemory_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

#endif
