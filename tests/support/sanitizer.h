// LODE_TEST_OWN_ALLOCATOR: 1 when a sanitizer (ASan, TSan, MSan) replaces
// glibc's malloc, so tests that count glibc's arena (mallinfo2,
// malloc_trim) skip themselves.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LODE_TEST_OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define LODE_TEST_OWN_ALLOCATOR 1
#endif
#endif
