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

/// Creates a RocksDB environment (a `rocksdb::Env`, opaque here, for `rvb_db_open`) whose
/// file system forwards every file operation to `callbacks`. Threads and scheduling stay
/// RocksDB's defaults. With `simulation` set, RocksDB's clock stands still at a fixed instant
/// and its sleeps return at once, so that a simulated run's bytes and timing depend only on its
/// seed. The callbacks struct is copied.
void *rvb_env_create(const rvb_callbacks *callbacks, int simulation);

/// Destroys an environment from `rvb_env_create`, after every database using it is closed.
void rvb_env_destroy(void *env);

/// What a database call returns: RocksDB's `Status::Code` (and, for I/O errors, its subcode),
/// so that the engine decides by kind and never by a message's wording. Anything but OK comes
/// with RocksDB's status text in `message` (RVB_MESSAGE_BYTES, NUL-terminated).
enum {
    RVB_DB_OK = 0,
    RVB_DB_NOT_FOUND = 1,
    RVB_DB_CORRUPTION = 2,
    RVB_DB_NOT_SUPPORTED = 3,
    RVB_DB_INVALID_ARGUMENT = 4,
    RVB_DB_IO_ERROR = 5,
    RVB_DB_NO_SPACE = 6,          // an I/O error with subcode kNoSpace
    RVB_DB_PATH_NOT_FOUND = 7,    // an I/O error with subcode kPathNotFound
    RVB_DB_BUSY = 8,
    RVB_DB_INCOMPLETE = 9,
    RVB_DB_SHUTDOWN = 10,
    RVB_DB_OTHER = 11,            // any other code (timed out, aborted, try again, ...)
};

/// How `rvb_db_open` opens. Every other option is fixed by the bridge (see database.cpp).
typedef struct rvb_open_options {
    int create_if_missing;
    int read_only;               // open without writing anything; writes fail
    int auto_compactions;        // 0: only rvb_db_compact_all compacts
    int synced_wal;              // RocksDB's own WAL on, every write synced (benchmarks only)
    uint64_t write_buffer_bytes;
} rvb_open_options;

typedef struct rvb_db rvb_db;
typedef struct rvb_batch rvb_batch;
typedef struct rvb_iterator rvb_iterator;

/// Opens the database at `path` with its file I/O through `env` (from `rvb_env_create`), or
/// through RocksDB's default environment when `env` is NULL. Sets *database on RVB_DB_OK.
int rvb_db_open(const char *path, void *env, const rvb_open_options *options, rvb_db **database, char *message);
/// Closes without flushing (avoid_flush_during_shutdown) and frees the handle.
void rvb_db_close(rvb_db *database);

/// Reads `key` with checksums verified. RVB_DB_NOT_FOUND when absent; on RVB_DB_OK *value is a
/// malloc'd copy (free with `free`; NULL when empty) and *length its size.
int rvb_db_get(rvb_db *database, const char *key, size_t key_length, char **value, size_t *length, char *message);
/// Applies `batch` atomically.
int rvb_db_write(rvb_db *database, rvb_batch *batch, char *message);
/// Flushes the memtables and waits.
int rvb_db_flush(rvb_db *database, char *message);
/// Compacts every level into the bottommost one; the caller waits.
int rvb_db_compact_all(rvb_db *database, char *message);
/// A hard-link checkpoint in `directory` (which must not exist), flushing first.
int rvb_db_checkpoint(rvb_db *database, const char *directory, char *message);
/// An integer property: 1 and *value when RocksDB knows it, 0 when not.
int rvb_db_property_int(rvb_db *database, const char *name, uint64_t *value);
/// A text property as a malloc'd string (free with `free`), or NULL when RocksDB does not know it.
char *rvb_db_property_text(rvb_db *database, const char *name);

rvb_batch *rvb_batch_create(void);
void rvb_batch_destroy(rvb_batch *batch);
/// Adds a put or a delete to the batch: RVB_DB_OK, or RocksDB's code when the batch would pass
/// WriteBatch's size limit (RVB_DB_INVALID_ARGUMENT / RVB_DB_OTHER).
int rvb_batch_put(rvb_batch *batch, const char *key, size_t key_length, const char *value, size_t value_length);
int rvb_batch_delete(rvb_batch *batch, const char *key, size_t key_length);
size_t rvb_batch_count(const rvb_batch *batch);

/// An iterator over `database` with checksums verified; pointers it returns stay valid until it
/// moves or is destroyed.
rvb_iterator *rvb_iterator_create(rvb_db *database);
void rvb_iterator_destroy(rvb_iterator *iterator);
void rvb_iterator_seek(rvb_iterator *iterator, const char *key, size_t key_length);
int rvb_iterator_valid(const rvb_iterator *iterator);
void rvb_iterator_next(rvb_iterator *iterator);
const char *rvb_iterator_key(const rvb_iterator *iterator, size_t *length);
const char *rvb_iterator_value(const rvb_iterator *iterator, size_t *length);
/// The iterator's status once it is no longer valid: RVB_DB_OK when it simply ran out.
int rvb_iterator_status(const rvb_iterator *iterator, char *message);

#ifdef __cplusplus
}
#endif

#endif
