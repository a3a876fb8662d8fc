import ArgumentParser
import Documents

#if canImport(Glibc)
import Glibc
#endif

/// `--json`, the one flag every command with a report takes: JSON (one `JSONDocument` on one
/// line, for programs) instead of text (for people).
public struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON (one document on one line) instead of text.")
    public var json = false

    public init() {}

    /// Prints `document` as JSON under `--json`, else the text `text` renders.
    public func print<Document: Encodable>(_ document: @autoclosure () -> Document, text: () -> String) {
        Swift.print(json ? JSONDocument.encode(document()) : text())
    }
}

/// Writes `text` (and a newline) to standard error at once, unbuffered.
public func printError(_ text: String, newline: Bool = true) {
    writeText(text + (newline ? "\n" : ""), to: 2)
}

/// Writes `text` to a file descriptor at once, unbuffered (progress events are read as they come).
public func writeText(_ text: String, to descriptor: Int32) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
}
