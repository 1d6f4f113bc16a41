#ifndef ZEROFS_SYNC_COUNTER_H
#define ZEROFS_SYNC_COUNTER_H
/// Completed sync calls in this process since it started (when this library is preloaded).
unsigned long zerofs_sync_count(void);
#endif
