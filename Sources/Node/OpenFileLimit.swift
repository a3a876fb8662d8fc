import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The process's open-file limit, raised at start so that `api.max_connections` fits beside
/// the engine's own files (WAL segments, every lane's SSTs).
enum OpenFileLimit {
    /// Descriptors kept for the engine and everything else besides connections.
    static let reserve = 1_024

    /// Raises the soft `RLIMIT_NOFILE` towards the hard limit until `maxConnections` plus the
    /// reserve fit; warns, naming the systemd setting, when the hard limit is lower.
    static func raise(toFit maxConnections: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = rlim_t(maxConnections + reserve)
        if limit.rlim_cur < wanted {
            limit.rlim_cur = min(wanted, limit.rlim_max)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        if limit.rlim_cur < wanted {
            logger.warning(
                "the open-file limit is lower than api.max_connections needs; connections past it wait in the kernel's queue",
                metadata: [
                    "open_file_limit": "\(limit.rlim_cur)", "needed": "\(wanted)",
                    "remedy": "raise LimitNOFILE (systemd) or ulimit -n, or lower api.max_connections",
                ])
        }
    }
}
