import Engine

/// `Engine.BlockOperation` under a name that Foundation's `BlockOperation` cannot shadow (the
/// module and its main class share the name `Engine`, so the qualified form does not resolve).
public typealias StateOperation = BlockOperation
