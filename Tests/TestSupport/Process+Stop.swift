import Foundation

extension Process {
    /// SIGTERM, up to `seconds` to exit, then SIGKILL; returns once the process is gone.
    public func stopGently(within seconds: Double = 5) {
        guard isRunning else { return }
        terminate()
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning, Date() < deadline { usleep(20_000) }
        if isRunning { kill(processIdentifier, SIGKILL) }
        waitUntilExit()
    }
}
