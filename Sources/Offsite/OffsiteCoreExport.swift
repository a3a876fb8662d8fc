// The store seam, the directory store and push / pull / list / prune live in OffsiteCore (no
// network of their own, so that the simulator drives them too); importing Offsite brings them.
@_exported import OffsiteCore
