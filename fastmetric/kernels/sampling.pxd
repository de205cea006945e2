# C-level declarations of fastmetric's pair-sampling kernel.
#
# Other Cython code can draw label-based random pairs without the GIL:
#
#     from fastmetric.kernels.sampling cimport intp_t, sample_label_pairs
#
# The caller groups the sample indices by label once (``order`` holds the
# indices of label 0, then those of label 1, ...; label c occupies
# ``order[offsets[c]:offsets[c + 1]]``), chooses integer label weights as a
# cumulative table ``cum_weights`` (length n_labels + 1, cum_weights[0] = 0,
# last entry > 0) and allocates the output.  See ``_sampling.pyx`` for the
# exact distribution of the pairs.

from libc.stdint cimport uint64_t

# np.intp has the size of Py_ssize_t on every platform numpy supports.
ctypedef Py_ssize_t intp_t


cdef void sample_label_pairs(
    const intp_t[::1] order,
    const intp_t[::1] offsets,
    const uint64_t[::1] cum_weights,
    bint positive,
    uint64_t key,
    uint64_t counter_start,
    intp_t[:, ::1] pairs,
    int n_threads,
) noexcept nogil
