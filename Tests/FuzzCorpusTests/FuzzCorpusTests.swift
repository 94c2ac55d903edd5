import Foundation
import FuzzEntries
import Testing

/// Every input of the committed fuzz corpus (`Fuzz/Corpus/<target>/`), the seeds and what fuzzing kept,
/// through its target's checks: what once passed keeps passing, without the fuzzer.
@Suite("fuzz corpus")
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus").path

    @Test(arguments: FuzzEntries.targets.map(\.name))
    func everyInputOfTheCorpusPasses(_ name: String) throws {
        let run = try #require(FuzzEntries.targets.first { $0.name == name }?.run)
        let directory = "\(Self.corpus)/\(name)"
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(files.count >= 5, "a corpus of \(files.count) inputs for \(name)")
        for file in files {
            run(Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(file)"))))
        }
    }
}
