/* What the waits at the ends of short parallel regions cost beside busy
 * processes: OpenMP's regions against a team whose caller never waits for a
 * helper that is off its core.  Run by region_waits.py (which compiles this
 * file); see that script and the README's Threads section.
 *
 * A run is REGIONS regions of CHUNKS chunks each, one after the other, as a
 * learner's evaluations run the kernels' regions.  A chunk is a fixed chain
 * of floating-point arithmetic (ITERS steps) whose result is stored by the
 * chunk's index, so any thread may compute any chunk, twice if need be, and
 * the stored values are the same.
 *
 * "omp": each region is `#pragma omp parallel for schedule(dynamic, 1)`; the
 * region ends when the last thread reaches its barrier, so a thread that
 * the scheduler took off its core to run another process holds up the
 * region until it is back and has finished its chunk.
 *
 * "team": THREADS - 1 helper threads live for the whole run.  A region is
 * published as one 64-bit job word, its generation (high half) and the next
 * unclaimed chunk (low half); the caller and the helpers claim chunks by
 * compare-and-swap on it, which fails once the caller has moved on to the
 * next region.  When no chunk is left to claim, the caller looks at the
 * chunks that helpers claimed: one finished in this generation is done; one
 * not finished after a short spin, the caller computes itself and goes on.
 * A helper that was off its core finishes its chunk later and stores the
 * same values.  (In a kernel the late helper must also not write where the
 * caller has moved on, nor read inputs the caller has freed: it would
 * compute into its own buffer and publish it by compare-and-swap, and the
 * inputs would be kept alive until the helpers have left the job.  This
 * benchmark only measures the time.)
 *
 * "fm_team": the same with fastmetric/kernels/include/fm_team.h, the
 * kernels' team (helpers compute into their own scratch and publish by
 * compare-and-swap; the caller gives a late chunk as long as its own chunks
 * took before it takes it over).
 *
 * Usage: region_waits MODE THREADS REGIONS CHUNKS ITERS REPEATS
 * Prints the wall time of each repeat in milliseconds, then "check ok" when
 * every region's stored values are those of a serial computation.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fm_team.h"   /* fastmetric/kernels/include: the kernels' team */

#define MAX_CHUNKS 4096
#define MAX_HELPERS 64
/* Pause instructions a waiting helper spins before it sleeps.  Short:
 * beside one busy process on 2 cores, 4 threads took 67 ms with 300, 68-73
 * with 3,000 (fastmetric's GOMP_SPINCOUNT) and 108-117 with 30,000, the
 * spinning helpers taking time slices from the threads with work.
 * (-DHELPER_SPIN=... and -DCALLER_LOOK=... override both.) */
#ifndef HELPER_SPIN
#define HELPER_SPIN 300
#endif
/* Pause instructions the caller gives a helper's claimed chunk before it
 * computes the chunk itself: a helper on its core finishes soon. */
#ifndef CALLER_LOOK
#define CALLER_LOOK 200
#endif

static long chunk_iters;
static int team_chunks;   /* chunks per region, the row length of chunk_out */
/* One row of results per region: a helper that finishes a chunk late
 * stores it in its own region's row, never over a later region's results.
 * (A kernel that reuses its buffers needs each helper to compute into a
 * buffer of its own, published by compare-and-swap; see above.) */
static double *chunk_out;
#define OUT(region, chunk) chunk_out[(size_t)((region) - 1) * (size_t)team_chunks + (size_t)(chunk)]

static double chunk_work(uint32_t region, int chunk)
{
    double x = 1.0 + 1e-9 * (double)(region * 131u + (uint32_t)chunk), acc = 0.0;
    for (long i = 0; i < chunk_iters; i++) {
        x = x * 1.0000001 + 1e-12;
        acc += x;
    }
    return acc;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double run_omp(int threads, int regions, int chunks)
{
    double t0 = seconds();
    for (int r = 1; r <= regions; r++) {
        #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int c = 0; c < chunks; c++)
            OUT(r, c) = chunk_work((uint32_t)r, c);
    }
    return seconds() - t0;
}

/* ---- the team ---------------------------------------------------------- */
static _Atomic uint64_t job_word;          /* generation << 32 | next chunk */
static _Atomic uint32_t wake_word;         /* futex word: the latest generation */
static _Atomic uint32_t done_in[MAX_CHUNKS];   /* generation that finished chunk c */
static _Atomic int helpers_stop;

static long futex(_Atomic uint32_t *word, int op, uint32_t value)
{
    return syscall(SYS_futex, (uint32_t *)word, op, value, NULL, NULL, 0);
}

/* The next chunk of generation `gen`, or -1 when none is left or the caller
 * has moved on. */
static int claim_chunk(uint32_t gen, int chunks)
{
    uint64_t w = atomic_load(&job_word);
    for (;;) {
        if ((uint32_t)(w >> 32) != gen || (int)(uint32_t)w >= chunks)
            return -1;
        if (atomic_compare_exchange_weak(&job_word, &w, w + 1))
            return (int)(uint32_t)w;
    }
}

static void *helper_main(void *unused)
{
    (void)unused;
    uint32_t seen = 0;
    while (!atomic_load(&helpers_stop)) {
        uint32_t gen = atomic_load(&wake_word);
        if (gen == seen) {
            for (int spin = 0; spin < HELPER_SPIN && atomic_load(&wake_word) == seen; spin++)
                __builtin_ia32_pause();
            if (atomic_load(&wake_word) == seen)
                futex(&wake_word, FUTEX_WAIT_PRIVATE, seen);
            continue;
        }
        seen = gen;
        int c;
        while ((c = claim_chunk(gen, team_chunks)) >= 0) {
            OUT(gen, c) = chunk_work(gen, c);
            atomic_store(&done_in[c], gen);
        }
    }
    return NULL;
}

static double run_team(int threads, int regions, int chunks, long *recomputed)
{
    pthread_t helpers[MAX_HELPERS];
    int n_helpers = threads - 1;
    atomic_store(&helpers_stop, 0);
    atomic_store(&wake_word, 0);
    atomic_store(&job_word, 0);
    for (int c = 0; c < chunks; c++)
        atomic_store(&done_in[c], 0);
    for (int h = 0; h < n_helpers; h++)
        pthread_create(&helpers[h], NULL, helper_main, NULL);

    double t0 = seconds();
    for (int r = 1; r <= regions; r++) {
        uint32_t gen = (uint32_t)r;
        atomic_store(&job_word, (uint64_t)gen << 32);
        atomic_store(&wake_word, gen);
        if (n_helpers)
            futex(&wake_word, FUTEX_WAKE_PRIVATE, n_helpers);
        int c;
        while ((c = claim_chunk(gen, chunks)) >= 0) {
            OUT(gen, c) = chunk_work(gen, c);
            atomic_store(&done_in[c], gen);
        }
        for (c = 0; c < chunks; c++) {
            for (int look = 0; look < CALLER_LOOK && atomic_load(&done_in[c]) != gen; look++)
                __builtin_ia32_pause();
            if (atomic_load(&done_in[c]) != gen) {
                OUT(gen, c) = chunk_work(gen, c);
                atomic_store(&done_in[c], gen);
                (*recomputed)++;
            }
        }
    }
    double elapsed = seconds() - t0;

    atomic_store(&helpers_stop, 1);
    atomic_store(&wake_word, UINT32_MAX);
    if (n_helpers)
        futex(&wake_word, FUTEX_WAKE_PRIVATE, n_helpers);
    for (int h = 0; h < n_helpers; h++)
        pthread_join(helpers[h], NULL);
    return elapsed;
}

/* ---- fm_team.h, the kernels' team ---------------------------------------- */
typedef struct {
    uint32_t region;
} fm_ctx;

static void fm_compute(const void *ctx, int64_t chunk, void *scratch)
{
    *(double *)scratch = chunk_work(((const fm_ctx *)ctx)->region, (int)chunk);
}

static void fm_publish(const void *ctx, int64_t chunk, const void *scratch)
{
    OUT(((const fm_ctx *)ctx)->region, chunk) = *(const double *)scratch;
}

static double run_fm_team(int threads, int regions, int chunks)
{
    double t0 = seconds();
    for (int r = 1; r <= regions; r++) {
        fm_ctx ctx = {(uint32_t)r};
        fm_team_job job = {fm_compute, fm_publish, &ctx, sizeof(ctx), chunks, sizeof(double)};
        if (fm_team_run(&job, threads) < 0) {
            fprintf(stderr, "fm_team_run failed\n");
            exit(2);
        }
    }
    return seconds() - t0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s omp|team|fm_team THREADS REGIONS CHUNKS ITERS REPEATS\n",
                argv[0]);
        return 2;
    }
    int team = strcmp(argv[1], "team") == 0, fm = strcmp(argv[1], "fm_team") == 0;
    int threads = atoi(argv[2]), regions = atoi(argv[3]), chunks = atoi(argv[4]);
    chunk_iters = atol(argv[5]);
    int repeats = atoi(argv[6]);
    if ((!team && !fm && strcmp(argv[1], "omp") != 0) || threads < 1 || threads > MAX_HELPERS
        || regions < 1 || chunks < 1 || chunks > MAX_CHUNKS || chunk_iters < 1 || repeats < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    team_chunks = chunks;
    chunk_out = calloc((size_t)regions * (size_t)chunks, sizeof(double));
    if (chunk_out == NULL) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    long recomputed = 0;
    for (int k = 0; k <= repeats; k++) {  /* k = 0: warm-up, not printed */
        double t = team ? run_team(threads, regions, chunks, &recomputed)
                 : fm ? run_fm_team(threads, regions, chunks)
                      : run_omp(threads, regions, chunks);
        if (k == 0)
            recomputed = 0;
        else
            printf("%.3f\n", 1e3 * t);
    }
    int ok = 1;
    for (int r = 1; r <= regions; r++)
        for (int c = 0; c < chunks; c++)
            ok &= OUT(r, c) == chunk_work((uint32_t)r, c);
    printf("recomputed %ld of %ld chunks\n", recomputed, (long)repeats * regions * chunks);
    printf(ok ? "check ok\n" : "check MISMATCH\n");
    free(chunk_out);
    return ok ? 0 : 1;
}
