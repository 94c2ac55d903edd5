// The functions of this target are inline, in include/CMemory.h; SwiftPM needs one source file.
#include "CMemory.h"
