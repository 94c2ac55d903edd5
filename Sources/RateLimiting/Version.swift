/// The version of ratelimitd, reported by `--version` and by `HELLO`.
public enum RatelimitdVersion {
    public static let string = "0.2.0"
}
