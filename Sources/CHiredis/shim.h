#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <sys/time.h>

/* Swift imports `errstr` as a tuple of 128 chars; this hands it over as the C string it is. */
static inline const char *chiredis_error_text(const redisContext *context) {
    return context->errstr;
}

/* The same for a reply reader's error. */
static inline const char *chiredis_reader_error_text(const redisReader *reader) {
    return reader->errstr;
}

#endif
