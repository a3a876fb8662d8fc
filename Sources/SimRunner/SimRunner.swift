import FaultFS

/// Placeholder replaced below.
