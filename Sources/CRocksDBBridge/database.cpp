// A lane's RocksDB database reached through RocksDB's public C++ API, for the Swift side.
//
// RocksDB's C API cannot take an environment made in C++ without reaching into its private
// structs, and it reports a failure only as text; this file opens the database itself with the
// environment from bridge.cpp and reports every failure as the status's code (see the RVB_DB_*
// codes in the header), with the text beside it for people.
#include "rivellum_rocksdb_bridge.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

struct rvb_db {
    std::unique_ptr<rocksdb::DB> db;
    rocksdb::WriteOptions writeOptions;
    rocksdb::ReadOptions readOptions;
    rocksdb::FlushOptions flushOptions;
};

struct rvb_batch {
    rocksdb::WriteBatch batch;
};

struct rvb_iterator {
    std::unique_ptr<rocksdb::Iterator> iterator;
};

namespace {

int codeOf(const rocksdb::Status &status) {
    using Code = rocksdb::Status::Code;
    switch (status.code()) {
    case Code::kOk: return RVB_DB_OK;
    case Code::kNotFound: return RVB_DB_NOT_FOUND;
    case Code::kCorruption: return RVB_DB_CORRUPTION;
    case Code::kNotSupported: return RVB_DB_NOT_SUPPORTED;
    case Code::kInvalidArgument: return RVB_DB_INVALID_ARGUMENT;
    case Code::kIOError:
        if (status.IsNoSpace()) return RVB_DB_NO_SPACE;
        if (status.IsPathNotFound()) return RVB_DB_PATH_NOT_FOUND;
        return RVB_DB_IO_ERROR;
    case Code::kBusy: return RVB_DB_BUSY;
    case Code::kIncomplete: return RVB_DB_INCOMPLETE;
    case Code::kShutdownInProgress: return RVB_DB_SHUTDOWN;
    default: return RVB_DB_OTHER;
    }
}

// The status's code, with its text in `message` unless it is OK.
int report(const rocksdb::Status &status, char *message) {
    if (!status.ok()) std::snprintf(message, RVB_MESSAGE_BYTES, "%s", status.ToString().c_str());
    return codeOf(status);
}

// The engine's fixed choices (the caller chooses only what `rvb_open_options` holds):
// - avoid_flush_during_shutdown: closing never flushes; lane state becomes durable only through
//   a flush, after the log that covers it;
// - max_bgerror_resume_count = 0: after an I/O error RocksDB does not retry in the background (a
//   failed sync is fatal; the engine restarts and recovers instead);
// - paranoid checks, no statistics dumps, nothing routine in the info log, no compression.
rocksdb::Options optionsFor(void *env, const rvb_open_options &open) {
    rocksdb::Options options;
    if (env) options.env = static_cast<rocksdb::Env *>(env);
    options.create_if_missing = open.create_if_missing != 0;
    options.avoid_flush_during_shutdown = true;
    options.max_bgerror_resume_count = 0;
    options.paranoid_checks = true;
    options.disable_auto_compactions = open.auto_compactions == 0;
    options.stats_dump_period_sec = 0;
    options.stats_persist_period_sec = 0;
    options.max_file_opening_threads = 1;
    options.max_background_jobs = 2;
    options.write_buffer_size = open.write_buffer_bytes;
    options.info_log_level = rocksdb::InfoLogLevel::HEADER_LEVEL;
    options.compression = rocksdb::kNoCompression;
    return options;
}

char *copyOf(const std::string &text) {
    char *copy = static_cast<char *>(std::malloc(text.size() + 1));
    if (!copy) return nullptr;
    std::memcpy(copy, text.data(), text.size());
    copy[text.size()] = 0;
    return copy;
}

}  // namespace

extern "C" int rvb_db_open(const char *path, void *env, const rvb_open_options *open, rvb_db **database, char *message) {
    rocksdb::Options options = optionsFor(env, *open);
    rocksdb::DB *opened = nullptr;
    rocksdb::Status status = open->read_only ? rocksdb::DB::OpenForReadOnly(options, path, &opened)
                                             : rocksdb::DB::Open(options, path, &opened);
    if (!status.ok()) {
        delete opened;
        return report(status, message);
    }
    auto *handle = new rvb_db;
    handle->db.reset(opened);
    if (open->synced_wal) {
        handle->writeOptions.sync = true;
    } else {
        handle->writeOptions.disableWAL = true;
    }
    handle->readOptions.verify_checksums = true;
    handle->flushOptions.wait = true;
    *database = handle;
    return RVB_DB_OK;
}

extern "C" void rvb_db_close(rvb_db *database) {
    delete database;  // DB's destructor closes it
}

extern "C" int rvb_db_get(rvb_db *database, const char *key, size_t key_length, char **value, size_t *length, char *message) {
    std::string found;
    rocksdb::Status status = database->db->Get(database->readOptions, rocksdb::Slice(key, key_length), &found);
    if (!status.ok()) return report(status, message);
    *length = found.size();
    *value = found.empty() ? nullptr : copyOf(found);
    if (!found.empty() && !*value) {
        std::snprintf(message, RVB_MESSAGE_BYTES, "out of memory copying a value of %zu bytes", found.size());
        return RVB_DB_OTHER;
    }
    return RVB_DB_OK;
}

extern "C" int rvb_db_write(rvb_db *database, rvb_batch *batch, char *message) {
    return report(database->db->Write(database->writeOptions, &batch->batch), message);
}

extern "C" int rvb_db_flush(rvb_db *database, char *message) {
    return report(database->db->Flush(database->flushOptions), message);
}

extern "C" int rvb_db_compact_all(rvb_db *database, char *message) {
    // Default options: the levels above are merged down; the bottommost level's own files are
    // not rewritten again (that needs a compaction filter, and the lanes have none).
    rocksdb::CompactRangeOptions options;
    return report(database->db->CompactRange(options, nullptr, nullptr), message);
}

extern "C" int rvb_db_checkpoint(rvb_db *database, const char *directory, char *message) {
    rocksdb::Checkpoint *checkpoint = nullptr;
    rocksdb::Status status = rocksdb::Checkpoint::Create(database->db.get(), &checkpoint);
    if (!status.ok()) return report(status, message);
    std::unique_ptr<rocksdb::Checkpoint> owned(checkpoint);
    return report(owned->CreateCheckpoint(directory, 0), message);
}

extern "C" int rvb_db_property_int(rvb_db *database, const char *name, uint64_t *value) {
    return database->db->GetIntProperty(rocksdb::Slice(name), value) ? 1 : 0;
}

extern "C" char *rvb_db_property_text(rvb_db *database, const char *name) {
    std::string text;
    if (!database->db->GetProperty(rocksdb::Slice(name), &text)) return nullptr;
    return copyOf(text);
}

extern "C" rvb_batch *rvb_batch_create(void) { return new rvb_batch; }

extern "C" void rvb_batch_destroy(rvb_batch *batch) { delete batch; }

extern "C" int rvb_batch_put(rvb_batch *batch, const char *key, size_t key_length, const char *value, size_t value_length) {
    return codeOf(batch->batch.Put(rocksdb::Slice(key, key_length), rocksdb::Slice(value, value_length)));
}

extern "C" int rvb_batch_delete(rvb_batch *batch, const char *key, size_t key_length) {
    return codeOf(batch->batch.Delete(rocksdb::Slice(key, key_length)));
}

extern "C" size_t rvb_batch_count(const rvb_batch *batch) { return static_cast<size_t>(batch->batch.Count()); }

extern "C" rvb_iterator *rvb_iterator_create(rvb_db *database) {
    auto *iterator = new rvb_iterator;
    iterator->iterator.reset(database->db->NewIterator(database->readOptions));
    return iterator;
}

extern "C" void rvb_iterator_destroy(rvb_iterator *iterator) { delete iterator; }

extern "C" void rvb_iterator_seek(rvb_iterator *iterator, const char *key, size_t key_length) {
    iterator->iterator->Seek(rocksdb::Slice(key, key_length));
}

extern "C" int rvb_iterator_valid(const rvb_iterator *iterator) { return iterator->iterator->Valid() ? 1 : 0; }

extern "C" void rvb_iterator_next(rvb_iterator *iterator) { iterator->iterator->Next(); }

extern "C" const char *rvb_iterator_key(const rvb_iterator *iterator, size_t *length) {
    rocksdb::Slice key = iterator->iterator->key();
    *length = key.size();
    return key.data();
}

extern "C" const char *rvb_iterator_value(const rvb_iterator *iterator, size_t *length) {
    rocksdb::Slice value = iterator->iterator->value();
    *length = value.size();
    return value.data();
}

extern "C" int rvb_iterator_status(const rvb_iterator *iterator, char *message) {
    return report(iterator->iterator->status(), message);
}
