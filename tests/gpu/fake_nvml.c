/* A fake libnvidia-ml.so.1 for the tests: the NVML calls the sidecar makes through nvidia-ml-py,
 * answered from a text file instead of a driver. Built by tests/gpu/build.sh.
 *
 * FAKE_NVML_FAIL_INIT=1   nvmlInit* fails with NVML_ERROR_DRIVER_NOT_LOADED.
 * FAKE_NVML_CONFIG=<file> the GPUs, read at the first nvmlInit*; unset or empty = no GPUs.
 *   One device a line, fields separated by blanks, the name last (it may contain blanks);
 *   '#' starts a comment. Memory in MiB, utilization in percent.
 *     gpu <uuid> <mem_total> <mem_used> <util_gpu> <util_mem> <mig> <name...>
 *         mig: "-" = not MIG capable, 0 = MIG capable but disabled, 1 = MIG enabled.
 *         NVML indices follow the order of the gpu lines.
 *     mig <uuid> <mem_total> <mem_used> <name...>
 *         a MIG device of the gpu line above it (its GPU should have mig 1).
 *   Like real NVML, MIG devices report no utilization (NVML_ERROR_NOT_SUPPORTED), and
 *   nvmlDeviceGetMaxMigDeviceCount is 7 on MIG capable GPUs whatever exists.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 64
#define MAX_MIGS 7
#define MIB (1024ULL * 1024ULL)

struct device {
    int is_mig;
    unsigned index;
    struct device *parent;
    char uuid[96];
    char name[96];
    unsigned long long mem_total, mem_used;
    unsigned util_gpu, util_mem;
    int mig_capable;
    unsigned mig_mode;
    unsigned mig_count;
    struct device *migs[MAX_MIGS];
};
typedef struct device *nvmlDevice_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned gpu, memory; } nvmlUtilization_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int refcount;
static struct device gpus[MAX_GPUS];
static struct device migs[MAX_GPUS * MAX_MIGS];
static unsigned gpu_count, mig_total;

static char *rest_of_line(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static int load_config(void) {
    gpu_count = mig_total = 0;
    memset(gpus, 0, sizeof gpus);
    memset(migs, 0, sizeof migs);
    const char *path = getenv("FAKE_NVML_CONFIG");
    if (!path || !*path) return NVML_SUCCESS;
    FILE *f = fopen(path, "r");
    if (!f) return NVML_ERROR_UNKNOWN;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char kind[8], uuid[96], mig[4];
        unsigned long long total, used;
        unsigned ug, um;
        int off = 0;
        if (sscanf(line, " %7s", kind) != 1) continue;
        if (!strcmp(kind, "gpu") && gpu_count < MAX_GPUS &&
            sscanf(line, " gpu %95s %llu %llu %u %u %3s %n", uuid, &total, &used, &ug, &um, mig,
                   &off) == 6 && off) {
            struct device *d = &gpus[gpu_count];
            d->index = gpu_count++;
            snprintf(d->uuid, sizeof d->uuid, "%s", uuid);
            snprintf(d->name, sizeof d->name, "%s", rest_of_line(line + off));
            d->mem_total = total * MIB;
            d->mem_used = used * MIB;
            d->util_gpu = ug;
            d->util_mem = um;
            d->mig_capable = strcmp(mig, "-") != 0;
            d->mig_mode = !strcmp(mig, "1");
        } else if (!strcmp(kind, "mig") && gpu_count && mig_total < MAX_GPUS * MAX_MIGS &&
                   sscanf(line, " mig %95s %llu %llu %n", uuid, &total, &used, &off) == 3 && off) {
            struct device *p = &gpus[gpu_count - 1];
            if (p->mig_count >= MAX_MIGS) continue;
            struct device *d = &migs[mig_total++];
            d->is_mig = 1;
            d->index = p->mig_count;
            d->parent = p;
            snprintf(d->uuid, sizeof d->uuid, "%s", uuid);
            snprintf(d->name, sizeof d->name, "%s", rest_of_line(line + off));
            d->mem_total = total * MIB;
            d->mem_used = used * MIB;
            p->migs[p->mig_count++] = d;
        } else {
            fprintf(stderr, "fake_nvml: ignoring config line: %s", line);
        }
    }
    fclose(f);
    return NVML_SUCCESS;
}

static int valid(nvmlDevice_t d) {
    if (!d) return 0;
    if (d >= gpus && d < gpus + gpu_count) return 1;
    return d >= migs && d < migs + mig_total;
}

#define CHECK_INIT() do { if (!refcount) return NVML_ERROR_UNINITIALIZED; } while (0)
#define CHECK_DEV(d) do { CHECK_INIT(); if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

static nvmlReturn_t copy_string(char *out, unsigned len, const char *s) {
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, s);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    const char *fail = getenv("FAKE_NVML_FAIL_INIT");
    if (fail && !strcmp(fail, "1")) return NVML_ERROR_DRIVER_NOT_LOADED;
    pthread_mutex_lock(&lock);
    nvmlReturn_t ret = refcount ? NVML_SUCCESS : load_config();
    if (ret == NVML_SUCCESS) refcount++;
    pthread_mutex_unlock(&lock);
    return ret;
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    nvmlReturn_t ret = refcount ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (refcount) refcount--;
    pthread_mutex_unlock(&lock);
    return ret;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned len) {
    CHECK_INIT();
    return copy_string(version, len, "999.99.99-fake");
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned len) {
    CHECK_INIT();
    return copy_string(version, len, "99.999.99-fake");
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    CHECK_INIT();
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device) {
    CHECK_INIT();
    if (!device || index >= gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    CHECK_INIT();
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < gpu_count; i++)
        if (!strcmp(gpus[i].uuid, uuid)) { *device = &gpus[i]; return NVML_SUCCESS; }
    for (unsigned i = 0; i < mig_total; i++)
        if (!strcmp(migs[i].uuid, uuid)) { *device = &migs[i]; return NVML_SUCCESS; }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned len) {
    CHECK_DEV(d);
    return copy_string(uuid, len, d->uuid);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned len) {
    CHECK_DEV(d);
    return copy_string(name, len, d->name);
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned *index) {
    CHECK_DEV(d);
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *index = d->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    CHECK_DEV(d);
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    m->total = d->mem_total;
    m->used = d->mem_used;
    m->free = d->mem_total > d->mem_used ? d->mem_total - d->mem_used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    CHECK_DEV(d);
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    m->total = d->mem_total;
    m->reserved = 0;
    m->used = d->mem_used;
    m->free = d->mem_total > d->mem_used ? d->mem_total - d->mem_used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    CHECK_DEV(d);
    if (!u) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    u->gpu = d->util_gpu;
    u->memory = d->util_mem;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned *current, unsigned *pending) {
    CHECK_DEV(d);
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || !d->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = d->mig_mode;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned *count) {
    CHECK_DEV(d);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || !d->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    *count = MAX_MIGS;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned index,
                                                 nvmlDevice_t *mig) {
    CHECK_DEV(d);
    if (!mig || index >= MAX_MIGS) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || !d->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
    if (!d->mig_mode || index >= d->mig_count) return NVML_ERROR_NOT_FOUND;
    *mig = d->migs[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned *is_mig) {
    CHECK_DEV(d);
    if (!is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *is_mig = (unsigned)d->is_mig;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t d, nvmlDevice_t *parent) {
    CHECK_DEV(d);
    if (!parent || !d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *parent = d->parent;
    return NVML_SUCCESS;
}
