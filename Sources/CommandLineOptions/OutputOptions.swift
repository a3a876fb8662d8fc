import ArgumentParser
import Documents

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
