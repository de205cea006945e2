/* Stress test of fm_team.h: many short jobs whose helpers are delayed at
 * random, outputs reused from job to job, inputs freed once released.
 * Every job's outputs must equal a serial computation.
 *
 * Usage: test_team THREADS JOBS CHUNKS [fork]
 * With "fork", the jobs run again in a child process forked after them (its
 * helpers are started afresh).  Prints "ok <jobs> <recomputed>" and exits 0,
 * or prints the first mismatch and exits 1. */
#include <sys/wait.h>
#define _GNU_SOURCE
#include "fm_team.h"
#include <stdio.h>
#include <time.h>

#define VALUES 16   /* doubles per chunk */

typedef struct {
    const double *input;   /* n_chunks values, freed after the job is released */
    double *output;        /* n_chunks * VALUES, the same buffer for every job */
    pthread_t caller;
    unsigned seed;
} ctx_t;

static double value(double x, int64_t c, int v) { return x * 1.000001 + (double)(c * VALUES + v); }

static void compute(const void *vctx, int64_t c, void *scratch)
{
    const ctx_t *ctx = vctx;
    double *out = scratch;
    if (!pthread_equal(pthread_self(), ctx->caller)) {
        /* A helper taken off its core now and then. */
        unsigned r = (ctx->seed * 2654435761u) ^ (unsigned)c * 40503u;
        if (r % 16 == 0) {
            struct timespec t = {0, 50000 + (long)(r % 7) * 20000};
            nanosleep(&t, NULL);
        }
    }
    /* A few microseconds of work, so that the helpers take part. */
    double x = ctx->input[c];
    for (int k = 0; k < 2000; k++)
        x = x * 0.9999999 + 1e-9;
    for (int v = 0; v < VALUES; v++)
        out[v] = value(ctx->input[c], c, v) + (x - x);
}

static void publish(const void *vctx, int64_t c, const void *scratch)
{
    const ctx_t *ctx = vctx;
    memcpy(ctx->output + c * VALUES, scratch, VALUES * sizeof(double));
}

static int run_jobs(int threads, int jobs, int64_t chunks);

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "fork") == 0))
        return 2;
    int threads = atoi(argv[1]), jobs = atoi(argv[2]);
    int64_t chunks = atol(argv[3]);
    int rc = run_jobs(threads, jobs, chunks);
    if (rc || argc == 4)
        return rc;
    pid_t child = fork();
    if (child == 0)
        _exit(run_jobs(threads, jobs, chunks));
    int status;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status))
        return 1;
    return WEXITSTATUS(status);
}

static int run_jobs(int threads, int jobs, int64_t chunks)
{
    double *output = calloc((size_t)chunks * VALUES, sizeof(double));
    double **pending = calloc((size_t)jobs, sizeof(double *));
    int64_t *pending_gen = calloc((size_t)jobs, sizeof(int64_t));
    int n_pending = 0;
    for (int j = 0; j < jobs; j++) {
        double *input = malloc((size_t)chunks * sizeof(double));
        for (int64_t c = 0; c < chunks; c++)
            input[c] = (double)j + 0.001 * (double)c;
        ctx_t ctx = {input, output, pthread_self(), (unsigned)j};
        fm_team_job job = {compute, publish, &ctx, sizeof(ctx), chunks, VALUES * sizeof(double)};
        int64_t gen = fm_team_run(&job, threads);
        if (gen < 0) {
            printf("fm_team_run failed\n");
            return 1;
        }
        for (int64_t c = 0; c < chunks; c++)
            for (int v = 0; v < VALUES; v++)
                if (output[c * VALUES + v] != value(input[c], c, v)) {
                    printf("job %d chunk %ld value %d: %.17g, expected %.17g\n", j, (long)c, v,
                           output[c * VALUES + v], value(input[c], c, v));
                    return 1;
                }
        /* Scribble over the input (as a kernel reuses its buffers; a late
         * helper may read the scribbles, its result is dropped: the one data
         * race ThreadSanitizer reports here, by design), and free it once no
         * helper can read it. */
        for (int64_t c = 0; c < chunks; c++)
            input[c] = -1e300;
        pending[n_pending] = input;
        pending_gen[n_pending++] = gen;
        int kept = 0;
        for (int p = 0; p < n_pending; p++) {
            if (fm_team_released((uint64_t)pending_gen[p])) {
                free(pending[p]);
            } else {
                pending[kept] = pending[p];
                pending_gen[kept++] = pending_gen[p];
            }
        }
        n_pending = kept;
    }
    /* What a late helper may still read is kept (a leak at exit, as the
     * Python layer keeps it referenced); the rest is freed. */
    for (int p = 0; p < n_pending; p++)
        if (fm_team_released((uint64_t)pending_gen[p]))
            free(pending[p]);
    free(pending);
    free(pending_gen);
    free(output);
    printf("ok %d %ld helpers %d\n", jobs, (long)atomic_load(&fm_team_g.recomputed),
           fm_team_g.n_helpers);
    fflush(stdout);
    return 0;
}
