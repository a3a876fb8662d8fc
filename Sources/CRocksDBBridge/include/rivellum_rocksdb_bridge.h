#ifndef RIVELLUM_ROCKSDB_BRIDGE_H
#define RIVELLUM_ROCKSDB_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes the Swift callbacks return. Anything but OK comes with a message.
enum {
    RVB_OK = 0,
    RVB_NOT_FOUND = 1,
    RVB_NO_SPACE = 2,
    RVB_IO_ERROR = 3,
    RVB_ALREADY_EXISTS = 4,
    RVB_BUSY = 5,
    RVB_NOT_SUPPORTED = 6,  // e.g. a hard link across file systems (EXDEV)
    RVB_CRASHED = 7,        // the simulated machine halted at a crash point
};

/// The size of the message buffer every callback may fill (NUL-terminated).
#define RVB_MESSAGE_BYTES 512

/// How `open_file` opens.
enum {
    RVB_OPEN_READ = 0,            // existing file, read-only
    RVB_OPEN_WRITE_TRUNCATE = 1,  // create or truncate, read-write
    RVB_OPEN_WRITE_APPEND = 2,    // create if missing, keep content, read-write
};

/// The file operations RocksDB needs, implemented in Swift over the engine's FileSystem.
/// Every function is called from RocksDB's threads as well as the caller's: the implementation
/// must be thread-safe. `context` is passed back unchanged.
typedef struct rvb_callbacks {
    void *context;
    int (*open_file)(void *context, const char *path, int mode, uint64_t *handle, uint64_t *size, char *message);
    int (*read)(void *context, uint64_t handle, uint64_t offset, char *buffer, size_t count, size_t *read_count, char *message);
    int (*append)(void *context, uint64_t handle, const char *bytes, size_t count, char *message);
    int (*truncate_file)(void *context, uint64_t handle, uint64_t size, char *message);
    int (*sync_file)(void *context, uint64_t handle, int full, char *message);
    int (*close_file)(void *context, uint64_t handle, char *message);
    /// 0 when the path exists (sets *is_directory, *size, *links), RVB_NOT_FOUND when not.
    int (*status)(void *context, const char *path, int *is_directory, uint64_t *size, uint64_t *links, char *message);
    /// Fills *names with a malloc'd block of NUL-terminated names and *count with how many.
    int (*list_directory)(void *context, const char *path, char **names, size_t *count, char *message);
    int (*remove_file)(void *context, const char *path, char *message);
    int (*create_directory)(void *context, const char *path, char *message);
    int (*remove_directory)(void *context, const char *path, char *message);
    int (*rename_path)(void *context, const char *source, const char *target, char *message);
    int (*link_path)(void *context, const char *source, const char *target, char *message);
    int (*sync_directory)(void *context, const char *path, char *message);
    int (*lock_file)(void *context, const char *path, uint64_t *lock, char *message);
    int (*unlock_file)(void *context, uint64_t lock, char *message);
} rvb_callbacks;

/// Creates a RocksDB environment (a `rocksdb_env_t *` for `rocksdb_options_set_env`) whose
/// file system forwards every file operation to `callbacks`. Threads and scheduling stay
/// RocksDB's defaults. With `simulation` set, RocksDB's clock stands still at a fixed instant
/// and its sleeps return at once, so that a simulated run's bytes and timing depend only on its
/// seed. The callbacks struct is copied.
void *rvb_env_create(const rvb_callbacks *callbacks, int simulation);

/// Destroys an environment from `rvb_env_create`, after every database using it is closed.
void rvb_env_destroy(void *env);

/// Compacts every level of `database` (a `rocksdb_t *`) into the bottommost level; the caller
/// waits. Returns RVB_OK, or RVB_NO_SPACE / RVB_IO_ERROR with RocksDB's status in `message`
/// (the C API's `rocksdb_compact_range` drops the status).
int rvb_compact_all(void *database, char *message);

#ifdef __cplusplus
}
#endif

#endif
