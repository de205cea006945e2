# fm_team.h's team of threads for short parallel regions on busy machines
# (see the header's note: the caller does not wait for a helper that the
# scheduler holds off its core; it computes that helper's chunk itself).
#
# The team is one per process, held by the extension module built from
# team.pyx: every kernel module that cimports this file runs its jobs
# through team_run (imported from that module when it loads), so they share
# the helpers, their scratch buffers and the generations that team_keep
# checks.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fastmetric/kernels/include/fm_team_job.h" nogil:
    ctypedef void (*fm_team_compute_fn)(const void *ctx, int64_t chunk, void *scratch)
    ctypedef void (*fm_team_publish_fn)(const void *ctx, int64_t chunk, const void *scratch)
    ctypedef struct fm_team_job:
        fm_team_compute_fn compute
        fm_team_publish_fn publish
        const void *ctx
        size_t ctx_bytes
        int64_t n_chunks
        size_t scratch_bytes
    enum:
        FM_TEAM_CTX_BYTES


# Run ``job`` on the caller and n_threads - 1 helpers: its generation (> 0),
# 0 when it ran alone in the caller, -1 when a buffer or helper could not
# be had.  What the job's context points to must stay valid until
# team_released(generation) (from Python: team_keep).
cdef int64_t team_run(const fm_team_job *job, int n_threads) noexcept nogil

# True when no helper is inside job ``generation`` or an earlier one.
cdef bint team_released(uint64_t generation) noexcept nogil
