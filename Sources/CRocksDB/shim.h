// RocksDB's C API from Debian's librocksdb-dev (7.8.3), for the Swift wrapper in Engine.
#include <rocksdb/c.h>
