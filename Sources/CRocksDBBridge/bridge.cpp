// A rocksdb::FileSystem that forwards every file operation RocksDB makes to C function pointers
// implemented in Swift over the engine's FileSystem protocol, so that under the simulator each
// lane's RocksDB runs on SimulatedFileSystem: its faults, its crashes, its trace.
//
// Operations RocksDB can live without (memory maps, random read-write files, recycled WAL
// files) answer NotSupported; nothing falls through to the real disk.
#include "rivellum_rocksdb_bridge.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/io_status.h>
#include <rocksdb/system_clock.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using rocksdb::FileOptions;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

IOStatus statusFrom(int code, const char *message) {
    switch (code) {
    case RVB_OK:
        return IOStatus::OK();
    case RVB_NOT_FOUND:
        return IOStatus::PathNotFound(message);
    case RVB_NO_SPACE:
        return IOStatus::NoSpace(message);
    case RVB_BUSY:
        return IOStatus::Busy(message);
    case RVB_NOT_SUPPORTED:
        // A hard link across file systems: RocksDB's checkpoint falls back to copying.
        return IOStatus::NotSupported(message);
    default:
        return IOStatus::IOError(message);
    }
}

class Callbacks {
public:
    explicit Callbacks(const rvb_callbacks &table) : table_(table) {}
    const rvb_callbacks &table() const { return table_; }
    void *context() const { return table_.context; }

private:
    rvb_callbacks table_;
};

class BridgeSequentialFile : public rocksdb::FSSequentialFile {
public:
    BridgeSequentialFile(std::shared_ptr<Callbacks> callbacks, uint64_t handle)
        : callbacks_(std::move(callbacks)), handle_(handle) {}
    ~BridgeSequentialFile() override {
        char message[RVB_MESSAGE_BYTES] = {0};
        callbacks_->table().close_file(callbacks_->context(), handle_, message);
    }
    IOStatus Read(size_t n, const IOOptions &, Slice *result, char *scratch, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        size_t count = 0;
        int code = callbacks_->table().read(callbacks_->context(), handle_, offset_, scratch, n, &count, message);
        if (code != RVB_OK) return statusFrom(code, message);
        offset_ += count;
        *result = Slice(scratch, count);
        return IOStatus::OK();
    }
    IOStatus Skip(uint64_t n) override {
        offset_ += n;
        return IOStatus::OK();
    }

private:
    std::shared_ptr<Callbacks> callbacks_;
    uint64_t handle_;
    uint64_t offset_ = 0;
};

class BridgeRandomAccessFile : public rocksdb::FSRandomAccessFile {
public:
    BridgeRandomAccessFile(std::shared_ptr<Callbacks> callbacks, uint64_t handle)
        : callbacks_(std::move(callbacks)), handle_(handle) {}
    ~BridgeRandomAccessFile() override {
        char message[RVB_MESSAGE_BYTES] = {0};
        callbacks_->table().close_file(callbacks_->context(), handle_, message);
    }
    IOStatus Read(uint64_t offset, size_t n, const IOOptions &, Slice *result, char *scratch,
                  IODebugContext *) const override {
        char message[RVB_MESSAGE_BYTES] = {0};
        size_t count = 0;
        int code = callbacks_->table().read(callbacks_->context(), handle_, offset, scratch, n, &count, message);
        if (code != RVB_OK) return statusFrom(code, message);
        *result = Slice(scratch, count);
        return IOStatus::OK();
    }

private:
    std::shared_ptr<Callbacks> callbacks_;
    uint64_t handle_;
};

class BridgeWritableFile : public rocksdb::FSWritableFile {
public:
    BridgeWritableFile(std::shared_ptr<Callbacks> callbacks, uint64_t handle, uint64_t size,
                       const FileOptions &options)
        : rocksdb::FSWritableFile(options), callbacks_(std::move(callbacks)), handle_(handle), size_(size) {}
    ~BridgeWritableFile() override { closeOnce(); }

    using rocksdb::FSWritableFile::Append;
    IOStatus Append(const Slice &data, const IOOptions &, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        int code = callbacks_->table().append(callbacks_->context(), handle_, data.data(), data.size(), message);
        if (code != RVB_OK) return statusFrom(code, message);
        size_ += data.size();
        return IOStatus::OK();
    }
    IOStatus Truncate(uint64_t size, const IOOptions &, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        int code = callbacks_->table().truncate_file(callbacks_->context(), handle_, size, message);
        if (code != RVB_OK) return statusFrom(code, message);
        size_ = size;
        return IOStatus::OK();
    }
    IOStatus Close(const IOOptions &, IODebugContext *) override { return closeOnce(); }
    // Appends go straight to the FileSystem (the page cache), so there is no user-space buffer.
    IOStatus Flush(const IOOptions &, IODebugContext *) override { return IOStatus::OK(); }
    IOStatus Sync(const IOOptions &, IODebugContext *) override { return sync(0); }
    IOStatus Fsync(const IOOptions &, IODebugContext *) override { return sync(1); }
    bool IsSyncThreadSafe() const override { return true; }
    uint64_t GetFileSize(const IOOptions &, IODebugContext *) override { return size_; }
    // Range syncs and preallocation are hints; the full Sync is what durability rests on.
    IOStatus RangeSync(uint64_t, uint64_t, const IOOptions &, IODebugContext *) override { return IOStatus::OK(); }
    IOStatus Allocate(uint64_t, uint64_t, const IOOptions &, IODebugContext *) override { return IOStatus::OK(); }

private:
    IOStatus sync(int full) {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(callbacks_->table().sync_file(callbacks_->context(), handle_, full, message), message);
    }
    IOStatus closeOnce() {
        if (closed_) return IOStatus::OK();
        closed_ = true;
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(callbacks_->table().close_file(callbacks_->context(), handle_, message), message);
    }

    std::shared_ptr<Callbacks> callbacks_;
    uint64_t handle_;
    uint64_t size_;
    bool closed_ = false;
};

class BridgeDirectory : public rocksdb::FSDirectory {
public:
    BridgeDirectory(std::shared_ptr<Callbacks> callbacks, std::string path)
        : callbacks_(std::move(callbacks)), path_(std::move(path)) {}
    IOStatus Fsync(const IOOptions &, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(callbacks_->table().sync_directory(callbacks_->context(), path_.c_str(), message), message);
    }
    IOStatus Close(const IOOptions &, IODebugContext *) override { return IOStatus::OK(); }

private:
    std::shared_ptr<Callbacks> callbacks_;
    std::string path_;
};

class BridgeLock : public rocksdb::FileLock {
public:
    explicit BridgeLock(uint64_t lock) : lock_(lock) {}
    uint64_t lock() const { return lock_; }

private:
    uint64_t lock_;
};

// RocksDB's informational LOG is not kept: the engine logs what matters through swift-log, and
// a LOG file would add unsynced noise to every simulated crash.
class DiscardingLogger : public rocksdb::Logger {
public:
    DiscardingLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::HEADER_LEVEL) {}
    using rocksdb::Logger::Logv;
    void Logv(const char *, va_list) override {}
    void Logv(const rocksdb::InfoLogLevel, const char *, va_list) override {}
};

class BridgeFileSystem : public rocksdb::FileSystemWrapper {
public:
    explicit BridgeFileSystem(const rvb_callbacks &table)
        : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()), callbacks_(std::make_shared<Callbacks>(table)) {}

    const char *Name() const override { return "RivellumBridgeFileSystem"; }

    IOStatus NewSequentialFile(const std::string &path, const FileOptions &, std::unique_ptr<rocksdb::FSSequentialFile> *result,
                               IODebugContext *) override {
        uint64_t handle = 0, size = 0;
        IOStatus status = open(path, RVB_OPEN_READ, &handle, &size);
        if (status.ok()) result->reset(new BridgeSequentialFile(callbacks_, handle));
        return status;
    }
    IOStatus NewRandomAccessFile(const std::string &path, const FileOptions &,
                                 std::unique_ptr<rocksdb::FSRandomAccessFile> *result, IODebugContext *) override {
        uint64_t handle = 0, size = 0;
        IOStatus status = open(path, RVB_OPEN_READ, &handle, &size);
        if (status.ok()) result->reset(new BridgeRandomAccessFile(callbacks_, handle));
        return status;
    }
    IOStatus NewWritableFile(const std::string &path, const FileOptions &options,
                             std::unique_ptr<rocksdb::FSWritableFile> *result, IODebugContext *) override {
        uint64_t handle = 0, size = 0;
        IOStatus status = open(path, RVB_OPEN_WRITE_TRUNCATE, &handle, &size);
        if (status.ok()) result->reset(new BridgeWritableFile(callbacks_, handle, size, options));
        return status;
    }
    IOStatus ReopenWritableFile(const std::string &path, const FileOptions &options,
                                std::unique_ptr<rocksdb::FSWritableFile> *result, IODebugContext *) override {
        uint64_t handle = 0, size = 0;
        IOStatus status = open(path, RVB_OPEN_WRITE_APPEND, &handle, &size);
        if (status.ok()) result->reset(new BridgeWritableFile(callbacks_, handle, size, options));
        return status;
    }
    IOStatus ReuseWritableFile(const std::string &, const std::string &, const FileOptions &,
                               std::unique_ptr<rocksdb::FSWritableFile> *, IODebugContext *) override {
        return IOStatus::NotSupported("recycled log files are not used");
    }
    IOStatus NewRandomRWFile(const std::string &, const FileOptions &, std::unique_ptr<rocksdb::FSRandomRWFile> *,
                             IODebugContext *) override {
        return IOStatus::NotSupported("random read-write files are not used");
    }
    IOStatus NewMemoryMappedFileBuffer(const std::string &, std::unique_ptr<rocksdb::MemoryMappedFileBuffer> *) override {
        return IOStatus::NotSupported("memory maps are not used");
    }
    IOStatus NewDirectory(const std::string &path, const IOOptions &, std::unique_ptr<rocksdb::FSDirectory> *result,
                          IODebugContext *) override {
        int isDirectory = 0;
        uint64_t size = 0, links = 0;
        IOStatus status = stat(path, &isDirectory, &size, &links);
        if (!status.ok()) return status;
        if (!isDirectory) return IOStatus::IOError(path + ": not a directory");
        result->reset(new BridgeDirectory(callbacks_, path));
        return IOStatus::OK();
    }
    IOStatus FileExists(const std::string &path, const IOOptions &, IODebugContext *) override {
        int isDirectory = 0;
        uint64_t size = 0, links = 0;
        char message[RVB_MESSAGE_BYTES] = {0};
        int code = table().status(context(), path.c_str(), &isDirectory, &size, &links, message);
        // A halted simulated machine answers "not found": RocksDB 7.8's checkpoint asserts that
        // FileExists on the WAL archive is OK or NotFound (WalManager::GetSortedWalFiles), and
        // every operation after the crash point fails anyway.
        if (code == RVB_NOT_FOUND || code == RVB_CRASHED) return IOStatus::NotFound(path);
        return statusFrom(code, message);
    }
    IOStatus GetChildren(const std::string &path, const IOOptions &, std::vector<std::string> *result,
                         IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        char *names = nullptr;
        size_t count = 0;
        int code = table().list_directory(context(), path.c_str(), &names, &count, message);
        if (code != RVB_OK) return statusFrom(code, message);
        result->clear();
        const char *cursor = names;
        for (size_t index = 0; index < count; index++) {
            result->emplace_back(cursor);
            cursor += std::strlen(cursor) + 1;
        }
        std::free(names);
        return IOStatus::OK();
    }
    IOStatus GetChildrenFileAttributes(const std::string &path, const IOOptions &options,
                                       std::vector<rocksdb::FileAttributes> *result, IODebugContext *dbg) override {
        std::vector<std::string> names;
        IOStatus status = GetChildren(path, options, &names, dbg);
        if (!status.ok()) return status;
        result->clear();
        for (const auto &name : names) {
            int isDirectory = 0;
            uint64_t size = 0, links = 0;
            IOStatus child = stat(path + "/" + name, &isDirectory, &size, &links);
            if (child.IsPathNotFound()) continue;  // removed meanwhile
            if (!child.ok()) return child;
            result->push_back(rocksdb::FileAttributes{name, size});
        }
        return IOStatus::OK();
    }
    IOStatus DeleteFile(const std::string &path, const IOOptions &, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(table().remove_file(context(), path.c_str(), message), message);
    }
    IOStatus Truncate(const std::string &path, size_t size, const IOOptions &, IODebugContext *) override {
        uint64_t handle = 0, current = 0;
        IOStatus status = open(path, RVB_OPEN_WRITE_APPEND, &handle, &current);
        if (!status.ok()) return status;
        char message[RVB_MESSAGE_BYTES] = {0};
        int code = table().truncate_file(context(), handle, size, message);
        char closeMessage[RVB_MESSAGE_BYTES] = {0};
        table().close_file(context(), handle, closeMessage);
        return statusFrom(code, message);
    }
    IOStatus CreateDir(const std::string &path, const IOOptions &, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(table().create_directory(context(), path.c_str(), message), message);
    }
    IOStatus CreateDirIfMissing(const std::string &path, const IOOptions &, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        int code = table().create_directory(context(), path.c_str(), message);
        if (code == RVB_ALREADY_EXISTS) return IOStatus::OK();
        return statusFrom(code, message);
    }
    IOStatus DeleteDir(const std::string &path, const IOOptions &, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(table().remove_directory(context(), path.c_str(), message), message);
    }
    IOStatus GetFileSize(const std::string &path, const IOOptions &, uint64_t *size, IODebugContext *) override {
        int isDirectory = 0;
        uint64_t links = 0;
        return stat(path, &isDirectory, size, &links);
    }
    IOStatus GetFileModificationTime(const std::string &path, const IOOptions &, uint64_t *time,
                                     IODebugContext *) override {
        // The FileSystem layer keeps no clock, on purpose (determinism); RocksDB only uses this
        // for TTL and for ordering info-log files, neither of which the engine enables.
        int isDirectory = 0;
        uint64_t size = 0, links = 0;
        *time = 0;
        return stat(path, &isDirectory, &size, &links);
    }
    IOStatus RenameFile(const std::string &source, const std::string &target, const IOOptions &,
                        IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(table().rename_path(context(), source.c_str(), target.c_str(), message), message);
    }
    IOStatus LinkFile(const std::string &source, const std::string &target, const IOOptions &,
                      IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(table().link_path(context(), source.c_str(), target.c_str(), message), message);
    }
    IOStatus NumFileLinks(const std::string &path, const IOOptions &, uint64_t *links, IODebugContext *) override {
        int isDirectory = 0;
        uint64_t size = 0;
        return stat(path, &isDirectory, &size, links);
    }
    IOStatus AreFilesSame(const std::string &, const std::string &, const IOOptions &, bool *,
                          IODebugContext *) override {
        return IOStatus::NotSupported("AreFilesSame");
    }
    IOStatus LockFile(const std::string &path, const IOOptions &, rocksdb::FileLock **lock, IODebugContext *) override {
        char message[RVB_MESSAGE_BYTES] = {0};
        uint64_t token = 0;
        int code = table().lock_file(context(), path.c_str(), &token, message);
        if (code != RVB_OK) return statusFrom(code, message);
        *lock = new BridgeLock(token);
        return IOStatus::OK();
    }
    IOStatus UnlockFile(rocksdb::FileLock *lock, const IOOptions &, IODebugContext *) override {
        auto *held = static_cast<BridgeLock *>(lock);
        char message[RVB_MESSAGE_BYTES] = {0};
        int code = table().unlock_file(context(), held->lock(), message);
        delete held;
        return statusFrom(code, message);
    }
    IOStatus GetTestDirectory(const IOOptions &, std::string *, IODebugContext *) override {
        return IOStatus::NotSupported("GetTestDirectory");
    }
    IOStatus NewLogger(const std::string &, const IOOptions &, std::shared_ptr<rocksdb::Logger> *result,
                       IODebugContext *) override {
        *result = std::make_shared<DiscardingLogger>();
        return IOStatus::OK();
    }
    IOStatus GetAbsolutePath(const std::string &path, const IOOptions &, std::string *output, IODebugContext *) override {
        *output = path;
        return IOStatus::OK();
    }
    IOStatus GetFreeSpace(const std::string &, const IOOptions &, uint64_t *, IODebugContext *) override {
        return IOStatus::NotSupported("GetFreeSpace");
    }
    IOStatus IsDirectory(const std::string &path, const IOOptions &, bool *isDirectory, IODebugContext *) override {
        int directory = 0;
        uint64_t size = 0, links = 0;
        IOStatus status = stat(path, &directory, &size, &links);
        *isDirectory = directory != 0;
        return status;
    }

private:
    const rvb_callbacks &table() const { return callbacks_->table(); }
    void *context() const { return callbacks_->context(); }

    IOStatus open(const std::string &path, int mode, uint64_t *handle, uint64_t *size) {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(table().open_file(context(), path.c_str(), mode, handle, size, message), message);
    }
    IOStatus stat(const std::string &path, int *isDirectory, uint64_t *size, uint64_t *links) {
        char message[RVB_MESSAGE_BYTES] = {0};
        return statusFrom(table().status(context(), path.c_str(), isDirectory, size, links, message), message);
    }

    std::shared_ptr<Callbacks> callbacks_;
};

// The clock of a simulated machine: time stands still at a fixed instant and sleeps return at
// once. RocksDB writes times into SST properties and MANIFEST edits and sleeps a second after a
// failed flush; with the wall clock, neither the bytes nor the timing of a simulated run would
// be a function of its seed.
class SimulationClock : public rocksdb::SystemClockWrapper {
public:
    static constexpr uint64_t kMicros = 1700000000ull * 1000000ull;
    explicit SimulationClock(const std::shared_ptr<rocksdb::SystemClock> &target) : rocksdb::SystemClockWrapper(target) {}
    const char *Name() const override { return "RivellumSimulationClock"; }
    uint64_t NowMicros() override { return kMicros; }
    uint64_t NowNanos() override { return kMicros * 1000; }
    void SleepForMicroseconds(int) override {}
    rocksdb::Status GetCurrentTime(int64_t *unix_time) override {
        *unix_time = static_cast<int64_t>(kMicros / 1000000);
        return rocksdb::Status::OK();
    }
};

// The composite environment with the simulation clock. Env::GetSystemClock() is not virtual; it
// returns the protected `system_clock_`, which a wrapper may set.
class SimulationEnv : public rocksdb::EnvWrapper {
public:
    explicit SimulationEnv(std::unique_ptr<rocksdb::Env> &&target) : rocksdb::EnvWrapper(std::move(target)) {
        system_clock_ = std::make_shared<SimulationClock>(rocksdb::SystemClock::Default());
    }
    const char *Name() const override { return "RivellumSimulationEnv"; }
    uint64_t NowMicros() override { return SimulationClock::kMicros; }
    uint64_t NowNanos() override { return SimulationClock::kMicros * 1000; }
    void SleepForMicroseconds(int) override {}
    rocksdb::Status GetCurrentTime(int64_t *unix_time) override {
        *unix_time = static_cast<int64_t>(SimulationClock::kMicros / 1000000);
        return rocksdb::Status::OK();
    }
};

}  // namespace

extern "C" void *rvb_env_create(const rvb_callbacks *callbacks, int simulation) {
    std::shared_ptr<rocksdb::FileSystem> fileSystem = std::make_shared<BridgeFileSystem>(*callbacks);
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fileSystem);
    if (simulation) {
        env = std::unique_ptr<rocksdb::Env>(new SimulationEnv(std::move(env)));
    }
    return env.release();
}

extern "C" void rvb_env_destroy(void *env) {
    delete static_cast<rocksdb::Env *>(env);
}
