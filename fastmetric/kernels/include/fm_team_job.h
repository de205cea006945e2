/* fm_team_job.h: what a caller gives fm_team.h's team (the types only, so
 * that code which fills a job need not include the team's state; the team
 * itself lives in one extension module, fastmetric.kernels.team). */
#ifndef FM_TEAM_JOB_H
#define FM_TEAM_JOB_H

#include <stddef.h>
#include <stdint.h>

/* At most this many bytes of a job's context are copied into the team. */
#define FM_TEAM_CTX_BYTES 512

/* Compute chunk `chunk` into `scratch` (job.scratch_bytes bytes). */
typedef void (*fm_team_compute_fn)(const void *ctx, int64_t chunk, void *scratch);
/* Copy chunk `chunk`'s scratch to the job's outputs. */
typedef void (*fm_team_publish_fn)(const void *ctx, int64_t chunk, const void *scratch);

typedef struct {
    fm_team_compute_fn compute;
    fm_team_publish_fn publish;
    const void *ctx;         /* copied into the team: at most FM_TEAM_CTX_BYTES */
    size_t ctx_bytes;
    int64_t n_chunks;        /* < 2^31 */
    size_t scratch_bytes;
} fm_team_job;

#endif  /* FM_TEAM_JOB_H */
