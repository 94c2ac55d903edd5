import FuzzEntries

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    FuzzEntries.httpCheck(Array(UnsafeBufferPointer(start: start, count: count)))
    return 0
}
