/* virtq_fuzz.h - the fuzz harness' API (virtq_fuzz.c), wrapped by cffi in the tests. */
#ifndef APPLIANCE_VIRTQ_FUZZ_H
#define APPLIANCE_VIRTQ_FUZZ_H
#include <stddef.h>
#include <stdint.h>

struct virtq_fuzz_result {
    uint64_t requests;
    uint64_t errors;
    uint32_t status;
    uint64_t bytes_read;
    uint64_t bytes_written;
};

int virtq_fuzz_one(const uint8_t *mem, size_t mem_len, const uint8_t *ops, size_t ops_len,
                   int read_only, struct virtq_fuzz_result *res);
#endif
