import ArgumentParser

@main
struct LoadTest: ParsableCommand {
    func run() throws {}
}
