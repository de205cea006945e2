/* fm_team.h: a team of threads for short parallel regions on busy machines.
 *
 * Why.  An OpenMP region ends when its last thread reaches the barrier.
 * Beside a busy process the scheduler keeps one of our threads off its core
 * for a time slice now and then, and every region that it is part of waits
 * for it: on 2 cores beside one busy process, 160 regions of ~0.6 ms of work
 * took as long on 2-4 threads as on 1 (benchmarks/region_waits.py).  In
 * this team the caller never waits for a helper that has not started
 * writing: a chunk that a helper claimed and has not finished, the caller
 * computes itself.  Every chunk's result is the same whoever computes it,
 * so results stay bitwise the same for any number of threads.
 *
 * Protocol (all atomics sequentially consistent):
 *
 * - A region (a "job") has a generation g.  The job word holds g (high 32
 *   bits) and the next unclaimed chunk (low 32 bits); caller and helpers
 *   claim chunks by compare-and-swap on it, which fails once the job's
 *   chunks are all claimed or the caller has published the next job.
 * - Whoever claims chunk c computes it into its own scratch buffer, then
 *   moves the chunk's state word from any value of an older generation to
 *   (g, WRITING), copies the scratch to the outputs (the job's publish
 *   function) and stores (g, DONE).  If the state is already (g, STOLEN),
 *   the result is dropped.
 * - When no chunk is left to claim, the caller walks the chunks: DONE is
 *   done; WRITING is waited for (a copy, microseconds); anything else is
 *   given as long as the caller's own chunks took on average (a helper on
 *   its core finishes by then), then moved to (g, STOLEN) and computed and
 *   published by the caller.
 * - Lifetimes: a helper announces the generation it works in before it
 *   claims, and 0 when it leaves.  The job (functions and a copy of the
 *   context) lives in one of FM_TEAM_SLOTS slots; before a slot is reused,
 *   its generation is cleared and the caller waits until no helper
 *   announces the slot's old generation (rare: a helper off its core for a
 *   whole FM_TEAM_SLOTS regions).  A helper checks the slot's generation
 *   after announcing its own, so it never reads a slot being rewritten.
 *   The inputs the context points to must stay valid until
 *   fm_team_released(g) is true: no helper is still in generation g or an
 *   earlier one.  (The Python layer keeps them referenced until then.)
 * - One caller at a time: a second thread that calls while the team is in
 *   use runs its job alone, chunk by chunk.
 * - After fork() the child has no helpers: they are started again on its
 *   first job.
 *
 * Linux only (futexes); elsewhere fm_team_run runs every chunk in the
 * caller.
 */
#ifndef FM_TEAM_H
#define FM_TEAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define FM_TEAM_THREADS 1
#else
#define FM_TEAM_THREADS 0
#endif

#include "fm_team_job.h"

#define FM_TEAM_MAX_HELPERS 63
#define FM_TEAM_SLOTS 4
/* Pause instructions a helper spins for the next job before it sleeps
 * (short: spinning helpers take time slices from the threads that work). */
#define FM_TEAM_HELPER_SPIN 300

enum { FM_CHUNK_WRITING = 1, FM_CHUNK_DONE = 2, FM_CHUNK_STOLEN = 3 };

typedef struct {
    _Atomic uint64_t gen;    /* 0: being rewritten or unused */
    fm_team_compute_fn compute;
    fm_team_publish_fn publish;
    int64_t n_chunks;
    size_t scratch_bytes;
    _Alignas(64) unsigned char ctx[FM_TEAM_CTX_BYTES];
    _Atomic uint64_t *state; /* per chunk: generation << 2 | FM_CHUNK_* */
    int64_t state_cap;
} fm_team_slot;

static inline uint64_t fm_team_word(uint64_t gen, int what) { return gen << 2 | (uint64_t)what; }

/* Run every chunk of `job` alone, in order (the team is busy, or one thread). */
static inline int fm_team_run_alone(const fm_team_job *job)
{
    void *scratch = malloc(job->scratch_bytes ? job->scratch_bytes : 1);
    if (scratch == NULL)
        return -1;
    for (int64_t c = 0; c < job->n_chunks; c++) {
        job->compute(job->ctx, c, scratch);
        job->publish(job->ctx, c, scratch);
    }
    free(scratch);
    return 0;
}

#if FM_TEAM_THREADS

typedef struct {
    _Atomic uint64_t job_word;                 /* gen << 32 | next chunk */
    _Atomic uint32_t wake;                     /* futex word: low bits of the latest gen */
    _Atomic uint64_t in_gen[FM_TEAM_MAX_HELPERS];  /* 0: idle */
    fm_team_slot slots[FM_TEAM_SLOTS];
    void *scratch[FM_TEAM_MAX_HELPERS + 1];    /* the caller's is the last */
    size_t scratch_cap[FM_TEAM_MAX_HELPERS + 1];
    int n_helpers;
    uint64_t last_gen;
    pthread_mutex_t caller;
    _Atomic int64_t recomputed;                /* chunks the caller took over */
} fm_team_state;

static fm_team_state fm_team_g = {.caller = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t fm_team_fork_once = PTHREAD_ONCE_INIT;

static inline long fm_team_futex(_Atomic uint32_t *word, int op, uint32_t value)
{
    return syscall(SYS_futex, (uint32_t *)word, op, value, NULL, NULL, 0);
}

static inline void fm_team_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline double fm_team_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Grow a scratch buffer; 0 on success. */
static inline int fm_team_reserve(void **buf, size_t *cap, size_t bytes)
{
    if (*cap >= bytes)
        return 0;
    void *p = realloc(*buf, bytes ? bytes : 1);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = bytes;
    return 0;
}

static inline int64_t fm_team_claim(uint64_t gen, int64_t n_chunks)
{
    uint64_t w = atomic_load(&fm_team_g.job_word);
    for (;;) {
        if ((w >> 32) != (gen & 0xffffffffu) || (int64_t)(uint32_t)w >= n_chunks)
            return -1;
        if (atomic_compare_exchange_weak(&fm_team_g.job_word, &w, w + 1))
            return (int64_t)(uint32_t)w;
    }
}

/* Compute chunk c of slot s (generation gen) into scratch and publish it
 * unless the caller has taken it over. */
static inline void fm_team_do_chunk(fm_team_slot *s, uint64_t gen, int64_t c, void *scratch)
{
    s->compute(s->ctx, c, scratch);
    _Atomic uint64_t *st = &s->state[c];
    uint64_t w = atomic_load(st);
    for (;;) {
        if ((w >> 2) == gen)   /* stolen (or, impossibly, done): drop ours */
            return;
        if (atomic_compare_exchange_weak(st, &w, fm_team_word(gen, FM_CHUNK_WRITING)))
            break;
    }
    s->publish(s->ctx, c, scratch);
    atomic_store(st, fm_team_word(gen, FM_CHUNK_DONE));
}

static void *fm_team_helper(void *arg)
{
    int h = (int)(intptr_t)arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t low = atomic_load(&fm_team_g.wake);
        if (low == seen) {
            for (int spin = 0; spin < FM_TEAM_HELPER_SPIN && atomic_load(&fm_team_g.wake) == seen;
                 spin++)
                fm_team_pause();
            if (atomic_load(&fm_team_g.wake) == seen)
                fm_team_futex(&fm_team_g.wake, FUTEX_WAIT_PRIVATE, seen);
            continue;
        }
        seen = low;
        uint64_t gen = atomic_load(&fm_team_g.job_word) >> 32;
        /* The full generation: the slot holds it; announce it, then check. */
        fm_team_slot *s = &fm_team_g.slots[gen % FM_TEAM_SLOTS];
        uint64_t full = atomic_load(&s->gen);
        if ((full & 0xffffffffu) != gen || full == 0)
            continue;
        atomic_store(&fm_team_g.in_gen[h], full);
        if (atomic_load(&s->gen) == full
                && fm_team_reserve(&fm_team_g.scratch[h], &fm_team_g.scratch_cap[h],
                                   s->scratch_bytes) == 0) {
            int64_t c;
            while ((c = fm_team_claim(full, s->n_chunks)) >= 0)
                fm_team_do_chunk(s, full, c, fm_team_g.scratch[h]);
        }
        atomic_store(&fm_team_g.in_gen[h], 0);
    }
    return NULL;
}

static void fm_team_after_fork_child(void)
{
    /* The helpers do not exist in the child: start afresh.  The mutex may
     * have been held by another thread of the parent. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    fm_team_g.caller = fresh;
    fm_team_g.n_helpers = 0;
    for (int h = 0; h < FM_TEAM_MAX_HELPERS; h++)
        atomic_store(&fm_team_g.in_gen[h], 0);
}

static void fm_team_register_fork(void)
{
    pthread_atfork(NULL, NULL, fm_team_after_fork_child);
}

/* Start helpers up to n; the number running. */
static inline int fm_team_grow(int n)
{
    if (n > FM_TEAM_MAX_HELPERS)
        n = FM_TEAM_MAX_HELPERS;
    pthread_once(&fm_team_fork_once, fm_team_register_fork);
    while (fm_team_g.n_helpers < n) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, fm_team_helper, (void *)(intptr_t)fm_team_g.n_helpers))
            break;
        pthread_detach(thread);
        fm_team_g.n_helpers++;
    }
    return fm_team_g.n_helpers;
}

/* True when no helper is in generation `gen` or an earlier one: what the
 * jobs up to `gen` point to may be freed. */
static inline int fm_team_released(uint64_t gen)
{
    for (int h = 0; h < FM_TEAM_MAX_HELPERS; h++) {
        uint64_t g = atomic_load(&fm_team_g.in_gen[h]);
        if (g != 0 && g <= gen)
            return 0;
    }
    return 1;
}

/* Run `job` on the caller and `n_threads - 1` helpers.  Returns the job's
 * generation (> 0; 0 when run alone): its context's pointers must stay
 * valid until fm_team_released(generation).  -1 on allocation failure. */
static inline int64_t fm_team_run(const fm_team_job *job, int n_threads)
{
    if (job->ctx_bytes > FM_TEAM_CTX_BYTES || job->n_chunks >= ((int64_t)1 << 31))
        return -1;
    if (n_threads <= 1 || job->n_chunks <= 1 || pthread_mutex_trylock(&fm_team_g.caller))
        return fm_team_run_alone(job) ? -1 : 0;
    int64_t result;
    int n_helpers = fm_team_grow(n_threads - 1);
    uint64_t gen = ++fm_team_g.last_gen;
    fm_team_slot *s = &fm_team_g.slots[gen % FM_TEAM_SLOTS];
    /* Take the slot: clear its generation, then wait for any helper still
     * in its old job (announced before our clear, so it may read it). */
    uint64_t old = atomic_exchange(&s->gen, 0);
    if (old != 0)
        while (!fm_team_released(old))
            fm_team_pause();
    if (s->state_cap < job->n_chunks) {
        _Atomic uint64_t *p = realloc((void *)s->state, (size_t)job->n_chunks * sizeof(*p));
        if (p == NULL) {
            result = -1;
            goto out;
        }
        for (int64_t c = s->state_cap; c < job->n_chunks; c++)
            atomic_init(&p[c], 0);
        s->state = p;
        s->state_cap = job->n_chunks;
    }
    if (fm_team_reserve(&fm_team_g.scratch[FM_TEAM_MAX_HELPERS],
                        &fm_team_g.scratch_cap[FM_TEAM_MAX_HELPERS], job->scratch_bytes)) {
        result = -1;
        goto out;
    }
    s->compute = job->compute;
    s->publish = job->publish;
    s->n_chunks = job->n_chunks;
    s->scratch_bytes = job->scratch_bytes;
    memcpy(s->ctx, job->ctx, job->ctx_bytes);
    atomic_store(&s->gen, gen);
    atomic_store(&fm_team_g.job_word, (gen & 0xffffffffu) << 32);
    atomic_store(&fm_team_g.wake, (uint32_t)gen);
    if (n_helpers)
        fm_team_futex(&fm_team_g.wake, FUTEX_WAKE_PRIVATE, n_helpers);

    void *mine = fm_team_g.scratch[FM_TEAM_MAX_HELPERS];
    int64_t c, n_mine = 0;
    double t_start = fm_team_seconds();
    while ((c = fm_team_claim(gen, s->n_chunks)) >= 0) {
        fm_team_do_chunk(s, gen, c, mine);
        n_mine++;
    }
    /* Chunks claimed by helpers and not finished: a helper on its core
     * finishes within about one chunk's time, so give them that (as long
     * as our own chunks took on average), then take over the rest. */
    double patience = n_mine ? (fm_team_seconds() - t_start) / (double)n_mine : 0.0;
    double t_scan = fm_team_seconds();
    for (c = 0; c < s->n_chunks; c++) {
        _Atomic uint64_t *st = &s->state[c];
        uint64_t w = atomic_load(st);
        for (;;) {
            if (w == fm_team_word(gen, FM_CHUNK_DONE))
                break;
            if (w == fm_team_word(gen, FM_CHUNK_WRITING)
                    || fm_team_seconds() - t_scan < patience) {
                fm_team_pause();
                w = atomic_load(st);
                continue;
            }
            if (atomic_compare_exchange_weak(st, &w, fm_team_word(gen, FM_CHUNK_STOLEN))) {
                s->compute(s->ctx, c, mine);
                s->publish(s->ctx, c, mine);
                atomic_store(st, fm_team_word(gen, FM_CHUNK_DONE));
                atomic_fetch_add(&fm_team_g.recomputed, 1);
                break;
            }
        }
    }
    result = (int64_t)gen;
out:
    pthread_mutex_unlock(&fm_team_g.caller);
    return result;
}

#else  /* no threads: every job runs in the caller */

static inline int fm_team_released(uint64_t gen) { (void)gen; return 1; }
static inline int64_t fm_team_run(const fm_team_job *job, int n_threads)
{
    (void)n_threads;
    return fm_team_run_alone(job) ? -1 : 0;
}

#endif
#endif  /* FM_TEAM_H */
