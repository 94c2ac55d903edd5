import RateLimitServer
import RateLimiting
import Testing

@Suite("rule book")
struct RuleBookTests {
    func rule(_ name: String, _ pattern: String) throws -> Rule {
        Rule(name: name, pattern: try KeyPattern(parsing: pattern), limit: try Limit(algorithm: .tokenBucket, limit: 5, windowNanos: 1_000_000_000))
    }

    @Test func aRuleKeepsItsCounterSlotAcrossReloads() throws {
        let book = RuleBook(try RuleSet([rule("login", "login:*"), rule("default", "*")]))
        #expect(book.current.slots == [1, 2])
        // Reordered, one gone, one new: the names keep their slots; a new name gets a new one.
        book.replace(with: try RuleSet([rule("api", "api:*"), rule("default", "*")]))
        #expect(book.current.slots == [3, 2])
        #expect(book.slotNames == ["login", "default", "api"])
        book.replace(with: try RuleSet([rule("login", "login:*")]))
        #expect(book.current.slots == [1])
        #expect(book.current.generation == 2)
    }
}
