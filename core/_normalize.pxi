# Shared C-level types of the compiled normalizer, included by _normalize.pyx.
#
# Why a .pxi and not _normalize.pxd: Cython pairs a .pxd with its module by dotted name
# (onyxserve/core/_normalize.pxd), but setup.py maps onyxserve.core -> core/, so a .pxd here is
# never found (the build fails with "'Error' is not a type identifier"), and a stale installed
# copy on sys.path would be paired instead. A textual include has neither problem.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

# The two input dtypes a request may carry; one specialization of each kernel per type.
ctypedef fused real_t:
    float
    double

# The two dtypes of the matrix the core writes (the ONNX graph's input: float32 for most models,
# float64 for models that compare in double, see ModelSpec.input_dtype).
ctypedef fused out_t:
    float
    double

cdef enum:  # kernel status; 0 is success, the rest are data errors the wrapper names
    ST_OK = 0
    ST_INF
    ST_NAN
    ST_UNKNOWN
    ST_TRUNC_PREFIX
    ST_TRUNC_ELEMENT
    ST_COUNT

cdef enum:  # feature kinds
    K_NUMERIC = 0
    K_ONEHOT = 1
    K_ORDINAL = 2
    K_INPUT = 3  # categorical read only by crosses (and sketches): parsed, writes no column

cdef enum:  # per-feature flag bits
    F_IMPUTE = 1
    F_ALLOW_NAN = 2
    F_UNKNOWN_ERROR = 4
    F_SKETCH = 8
    F_BINNED = 16  # numeric: writes the one-hot of its bin (bin_off/bin_n) instead of the value

cdef enum:  # Src.dtype
    DT_F32 = 0
    DT_F64 = 1
    DT_BYTES = 2

cdef struct Error:
    int status
    Py_ssize_t block, row, feature
    Py_ssize_t a, b, c  # status-specific details: byte offsets, lengths, element counts

cdef struct Src:  # one validated input array or BYTES buffer, as the nogil pass sees it
    const char* data
    Py_ssize_t n  # rows (arrays) or bytes (BYTES buffers)
    Py_ssize_t s0, s1  # byte strides of rows and columns
    int dtype

cdef struct Blk:  # one validated RowBlock
    Py_ssize_t n_rows
    Py_ssize_t src  # index of its first Src: the matrix, or n_features columns
    bint matrix

cdef struct Table:  # open-addressing category table, readable without the GIL
    const int32_t* slots  # category index or -1 (empty), size mask + 1
    uint64_t mask
    const char* keys  # all category bytes back to back
    const Py_ssize_t* key_off  # n + 1 offsets into keys

cdef struct Cross:  # a derived one-hot feature: table lookup of a + sep + b, raw bytes
    Py_ssize_t a, b  # the two categorical parent features
    Py_ssize_t column, drop, n_cat
    Table table
    const char* sep
    Py_ssize_t n_sep

cdef struct Params:  # everything the nogil pass reads; pointers into arrays the Plan keeps alive
    Py_ssize_t n_features, width
    bint identity  # feature j writes column j and nothing else: form A rows copy straight
    const Py_ssize_t* column
    const uint8_t* kind
    const uint8_t* flags
    const double* offset
    const double* divisor
    const double* scale
    const double* shift
    const double* lo
    const double* hi
    const double* fill  # numeric impute value, or ordinal unknown_value
    const Py_ssize_t* drop  # one-hot dropped index, -1 for none
    const Py_ssize_t* impute_code  # category index of the categorical imputer, -1 if unknown
    const Py_ssize_t* n_cat
    const Table* tables
    const Py_ssize_t* sk_off  # start of the feature's counts in `counts`
    const Py_ssize_t* ed_off  # start of its edges in `edges`
    const Py_ssize_t* ed_n
    const double* edges
    int64_t* counts
    Py_ssize_t n_sketched  # numeric features with a sketch, for form A's per-row update
    const Py_ssize_t* sketched
    const Py_ssize_t* bin_off  # start of the feature's interior bin edges in `bin_edges`
    const Py_ssize_t* bin_n  # number of interior edges; the one-hot block is bin_n + 1 wide
    const double* bin_edges
    Py_ssize_t n_binned  # binned features, for form A's per-row pass
    const Py_ssize_t* binned
    Py_ssize_t n_cross
    const Cross* crosses
