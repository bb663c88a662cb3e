"""Compiled gather + normalize: the hot path between the batcher and ONNX Runtime.

``Plan.run`` validates a batch of RowBlocks with the GIL (cheap C-level checks through the
numpy C API, no memoryview acquisition per block: that alone costs more than normalizing a
1-row request), records raw pointers and strides, then makes one pass over all blocks that
normalizes into the preallocated float32 or float64 output and updates the drift sketches. That pass
touches no Python object, so it can run without the GIL; it only drops the GIL when the work
is large enough to pay for re-acquiring it.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

cimport numpy as cnp
import numpy as np

include "_normalize.pxi"

cnp.import_array()

# Below this many output values the pass keeps the GIL: releasing and re-acquiring it costs
# more than the work, and re-acquiring can wait a whole switch interval behind another thread.
cdef enum:
    NOGIL_MIN_VALUES = 32768


# ---------------------------------------------------------------------------------- tables

cdef inline uint64_t _fnv1a_more(uint64_t h, const char* p, Py_ssize_t n) noexcept nogil:
    """FNV-1a continued over ``p[:n]``: hashing a, then sep, then b hashes the joined key."""
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>p[i]) * 1099511628211ULL
    return h


cdef inline uint64_t _fnv1a(const char* p, Py_ssize_t n) noexcept nogil:
    return _fnv1a_more(14695981039346656037ULL, p, n)


cdef inline int32_t _lookup(const Table* t, const char* p, Py_ssize_t n) noexcept nogil:
    """Category index of the bytes ``p[:n]``, or -1."""
    cdef uint64_t i = _fnv1a(p, n) & t.mask
    cdef int32_t k
    while True:
        k = t.slots[i]
        if k < 0:
            return -1
        if t.key_off[k + 1] - t.key_off[k] == n and memcmp(t.keys + t.key_off[k], p, n) == 0:
            return k
        i = (i + 1) & t.mask


cdef inline int32_t _lookup_joined(const Table* t, const char* a, Py_ssize_t na, const char* sep,
                                   Py_ssize_t ns, const char* b, Py_ssize_t nb) noexcept nogil:
    """Category index of the bytes ``a + sep + b`` without building them, or -1."""
    cdef uint64_t i = _fnv1a_more(_fnv1a_more(_fnv1a(a, na), sep, ns), b, nb) & t.mask
    cdef const char* key
    cdef int32_t k
    while True:
        k = t.slots[i]
        if k < 0:
            return -1
        key = t.keys + t.key_off[k]
        if (t.key_off[k + 1] - t.key_off[k] == na + ns + nb and memcmp(key, a, na) == 0
                and memcmp(key + na, sep, ns) == 0 and memcmp(key + na + ns, b, nb) == 0):
            return k
        i = (i + 1) & t.mask


cdef inline Py_ssize_t _prefix(const char* p) noexcept nogil:
    """The little-endian uint32 length prefix of a V2 BYTES element."""
    cdef const uint8_t* u = <const uint8_t*>p
    return <Py_ssize_t>(u[0] | (u[1] << 8) | (u[2] << 16) | (<uint64_t>u[3] << 24))


cdef class CategoryTable:
    """Category bytes -> index, built once per feature; load factor <= 1/2."""

    cdef Table t
    cdef readonly Py_ssize_t n
    cdef object _slots, _keys, _off  # storage behind t's pointers

    def __init__(self, categories):
        cats = [c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in categories]
        if len(set(cats)) != len(cats):
            raise ValueError("duplicate categories")
        self.n = len(cats)
        cdef Py_ssize_t size = 8
        while size < 2 * self.n:
            size *= 2
        self._keys = b"".join(cats)
        self._off = np.zeros(self.n + 1, dtype=np.intp)
        self._off[1:] = np.cumsum([len(c) for c in cats], dtype=np.intp)
        self._slots = np.full(size, -1, dtype=np.int32)
        cdef Py_ssize_t[::1] off = self._off
        cdef int32_t[::1] slots = self._slots
        self.t.slots = &slots[0]
        self.t.mask = size - 1
        self.t.keys = PyBytes_AS_STRING(self._keys)
        self.t.key_off = &off[0]
        cdef uint64_t i
        cdef Py_ssize_t k
        for k in range(self.n):
            i = _fnv1a(self.t.keys + off[k], off[k + 1] - off[k]) & self.t.mask
            while slots[i] >= 0:
                i = (i + 1) & self.t.mask
            slots[i] = <int32_t>k

    def lookup(self, value) -> int:
        """Index of ``value`` (str or bytes), -1 if unknown; for tests and the imputer."""
        b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return _lookup(&self.t, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


# --------------------------------------------------------------------------------- kernels

cdef inline Py_ssize_t _upper(const double* e, Py_ssize_t n, double x) noexcept nogil:
    """#edges <= x in the sorted ``e[:n]``: numpy.searchsorted(e, x, side='right')."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if e[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline void _sketch_num(const Params* p, Py_ssize_t j, double x) noexcept nogil:
    """Count the raw value: slot k = #edges <= x (0 below, n above), n + 1 for NaN.

    Like numpy.histogram, the last inner bin is closed: x == last edge counts in it.
    """
    cdef int64_t* c = p.counts + p.sk_off[j]
    cdef const double* e = p.edges + p.ed_off[j]
    cdef Py_ssize_t n = p.ed_n[j], lo
    if x != x:
        c[n + 1] += 1
        return
    lo = _upper(e, n, x)
    if lo == n and x == e[n - 1]:
        lo = n - 1
    c[lo] += 1


cdef inline double _scale(double x, double off, double div, double sc, double sh, double lo,
                          double hi) noexcept nogil:
    """``clip((x - off) / div * sc + sh, lo, hi)`` in np.clip's order; NaN stays NaN.

    One operation per scikit-learn step, in its order (StandardScaler ``(x - mean) / scale``,
    MinMaxScaler ``x * scale + min``), so the float64 result is bit for bit the pipeline's; the
    identity parameters (0, 1, 1, 0) are exact. The build turns off FMA contraction
    (setup.py), which would fuse ``* sc + sh`` into one differently rounded operation.
    Branch-free (the compiler turns both ternaries into max/min), so the loops calling it
    vectorize."""
    x = (x - off) / div * sc + sh
    x = lo if x < lo else x
    return hi if x > hi else x


cdef inline int _num(const Params* p, Py_ssize_t j, double x, out_t* dst) noexcept nogil:
    """The full rules for one numeric value; the slow path for rows holding a NaN or inf."""
    if x - x != 0:  # NaN or +-inf
        if x != x:
            if p.flags[j] & F_IMPUTE:
                x = p.fill[j]
            elif not (p.flags[j] & F_ALLOW_NAN):
                return ST_NAN
        else:
            return ST_INF
    dst[0] = <out_t>_scale(x, p.offset[j], p.divisor[j], p.scale[j], p.shift[j], p.lo[j], p.hi[j])
    return ST_OK


cdef inline void _bin(const Params* p, Py_ssize_t j, double x, out_t* row) noexcept nogil:
    """Binned feature ``j``: the one-hot of KBinsDiscretizer's bin of the normalized value into
    its block of ``row``. Runs after the value rules passed, so a NaN here has an imputer."""
    cdef Py_ssize_t n = p.bin_n[j]
    cdef out_t* dst = row + p.column[j]
    if x != x:
        x = p.fill[j]
    x = _scale(x, p.offset[j], p.divisor[j], p.scale[j], p.shift[j], p.lo[j], p.hi[j])
    memset(dst, 0, (n + 1) * sizeof(out_t))
    dst[_upper(p.bin_edges + p.bin_off[j], n, x)] = 1.0


cdef inline double _at(const real_t* base, Py_ssize_t i, Py_ssize_t j, Py_ssize_t s0,
                       Py_ssize_t s1) noexcept nogil:
    return (<const real_t*>(<const char*>base + i * s0 + j * s1))[0]


cdef int _first_bad(const Params* p, const real_t* base, Py_ssize_t n, Py_ssize_t s0,
                    Py_ssize_t s1, bint matrix, Py_ssize_t j0, Error* err) noexcept nogil:
    """Slow path after an error: find the one the reference reports (feature order, then
    infinities before NaNs). ``matrix``: scan every feature; else only column ``j0``."""
    cdef Py_ssize_t i, j, jj, j1 = p.n_features if matrix else j0 + 1
    cdef double x
    for j in range(j0, j1):
        if p.kind[j] != K_NUMERIC:
            continue
        jj = j if matrix else 0
        for i in range(n):
            x = _at(base, i, jj, s0, s1)
            if x - x != 0 and x == x:
                err.row, err.feature = i, j
                return ST_INF
        if not (p.flags[j] & (F_IMPUTE | F_ALLOW_NAN)):
            for i in range(n):
                x = _at(base, i, jj, s0, s1)
                if x != x:
                    err.row, err.feature = i, j
                    return ST_NAN
    return ST_OK  # unreachable when called after a numeric error


cdef int _matrix(const Params* p, const real_t* base, Py_ssize_t n, Py_ssize_t s0,
                 Py_ssize_t s1, out_t* out, Error* err) noexcept nogil:
    """Form A: rows x features in one loop, writing whole output rows.

    Each row first goes through the branch-free fast loop, which only notes whether it met a
    NaN or inf; such rows (rare) are redone with the full rules. Parameters are read through
    local pointers: extensions build with -fno-strict-aliasing, so through ``p`` they would be
    reloaded after every store.
    """
    cdef Py_ssize_t i, j, k, F = p.n_features, w = p.width
    cdef const double* off = p.offset
    cdef const double* dv = p.divisor
    cdef const double* sc = p.scale
    cdef const double* sh = p.shift
    cdef const double* lo = p.lo
    cdef const double* hi = p.hi
    cdef const Py_ssize_t* col = p.column
    cdef bint dense = p.identity and s1 == sizeof(real_t)
    cdef const real_t* r
    cdef out_t* o
    cdef double x
    cdef int bad
    for i in range(n):
        r = <const real_t*>(<const char*>base + i * s0)
        o = out + i * w
        bad = 0
        if dense:  # contiguous row into the same columns: the loop the compiler vectorizes
            for j in range(F):
                x = r[j]
                bad |= x - x != 0
                o[j] = <out_t>_scale(x, off[j], dv[j], sc[j], sh[j], lo[j], hi[j])
        else:
            for j in range(F):
                x = _at(base, i, j, s0, s1)
                bad |= x - x != 0
                o[col[j]] = <out_t>_scale(x, off[j], dv[j], sc[j], sh[j], lo[j], hi[j])
        if bad:
            for j in range(F):
                if _num(p, j, _at(base, i, j, s0, s1), o + col[j]):
                    return _first_bad(p, base, n, s0, s1, True, 0, err)
        for k in range(p.n_binned):  # overwrites the value the loop above wrote there
            j = p.binned[k]
            _bin(p, j, _at(base, i, j, s0, s1), o)
        for k in range(p.n_sketched):
            j = p.sketched[k]
            _sketch_num(p, j, _at(base, i, j, s0, s1))
    return ST_OK


cdef int _column(const Params* p, Py_ssize_t j, const real_t* base, Py_ssize_t n,
                 Py_ssize_t s0, out_t* out, Error* err) noexcept nogil:
    """Form B numeric column ``j`` into output column ``column[j]``; same fast/slow split."""
    cdef Py_ssize_t i, w = p.width
    cdef double off = p.offset[j], dv = p.divisor[j], sc = p.scale[j], sh = p.shift[j]
    cdef double lo = p.lo[j], hi = p.hi[j], x
    cdef out_t* dst = out + p.column[j]
    cdef int bad = 0
    for i in range(n):
        x = _at(base, i, 0, s0, 0)
        bad |= x - x != 0
        dst[i * w] = <out_t>_scale(x, off, dv, sc, sh, lo, hi)
    if bad:
        for i in range(n):
            if _num(p, j, _at(base, i, 0, s0, 0), dst + i * w):
                return _first_bad(p, base, n, s0, 0, False, j, err)
    if p.flags[j] & F_BINNED:
        for i in range(n):
            _bin(p, j, _at(base, i, 0, s0, 0), out + i * w)
    if p.flags[j] & F_SKETCH:
        for i in range(n):
            _sketch_num(p, j, _at(base, i, 0, s0, 0))
    return ST_OK


cdef int _categorical(const Params* p, Py_ssize_t j, const char* buf, Py_ssize_t size,
                      Py_ssize_t n_rows, out_t* out, Error* err) noexcept nogil:
    """Form B categorical column ``j``: parse the V2 BYTES buffer, look up, encode.

    A malformed buffer or a wrong element count wins over an unknown category (as in the
    reference, which decodes the whole buffer first), so parsing goes on after an unknown.
    """
    cdef Py_ssize_t pos = 0, k = 0, m, bad = -1, r, w = p.width, cw
    cdef int32_t code
    cdef uint8_t f = p.flags[j], kind = p.kind[j]
    cdef Py_ssize_t drop = p.drop[j], col = p.column[j]
    cdef out_t* dst
    cw = p.n_cat[j] - (drop >= 0)
    while pos < size:
        if size - pos < 4:
            err.row, err.feature, err.a = 0, j, pos
            return ST_TRUNC_PREFIX
        m = _prefix(buf + pos)
        pos += 4
        if m > size - pos:
            err.row, err.feature, err.a, err.b, err.c = 0, j, k, m, pos
            return ST_TRUNC_ELEMENT
        if k < n_rows and bad < 0:
            code = _lookup(&p.tables[j], buf + pos, m)
            if f & F_SKETCH:  # raw value: the categories, then unknown, then missing (empty)
                p.counts[p.sk_off[j] + (code if code >= 0 else p.n_cat[j] + (m == 0))] += 1
            r = 0
            if m == 0 and (f & F_IMPUTE):
                code, r = <int32_t>p.impute_code[j], 1
            if code < 0 and (f & F_UNKNOWN_ERROR):
                bad = k
                err.a, err.b, err.c = pos, m, r
            else:
                dst = out + k * w + col
                if kind == K_ORDINAL:
                    dst[0] = <out_t>code if code >= 0 else <out_t>p.fill[j]
                elif kind == K_ONEHOT:
                    memset(dst, 0, cw * sizeof(out_t))
                    if code >= 0 and code != drop:
                        dst[code - (drop >= 0 and code > drop)] = 1.0
        pos += m
        k += 1
    if k != n_rows:
        err.row, err.feature, err.a = 0, j, k
        return ST_COUNT
    if bad >= 0:
        err.row, err.feature = bad, j
        return ST_UNKNOWN
    return ST_OK


cdef void _cross(const Cross* x, const Src* s, Py_ssize_t n_rows, Py_ssize_t w, out_t* out) noexcept nogil:
    """Cross ``x`` of one form B block. Its parents' buffers were parsed by their own features
    first, without error, so each holds exactly ``n_rows`` well-formed elements."""
    cdef const char* a = s[x.a].data
    cdef const char* b = s[x.b].data
    cdef Py_ssize_t k, na, nb, drop = x.drop, cw = x.n_cat - (x.drop >= 0)
    cdef int32_t code
    cdef out_t* dst
    for k in range(n_rows):
        na, nb = _prefix(a), _prefix(b)
        a += 4
        b += 4
        code = _lookup_joined(&x.table, a, na, x.sep, x.n_sep, b, nb)
        dst = out + k * w + x.column
        memset(dst, 0, cw * sizeof(out_t))
        if code >= 0 and code != drop:
            dst[code - (drop >= 0 and code > drop)] = 1.0
        a += na
        b += nb


cdef int _run(const Params* p, const Blk* blks, Py_ssize_t nb, const Src* srcs, out_t* out,
              Error* err) noexcept nogil:
    """The one pass over all blocks; stops at the first block with an error."""
    cdef Py_ssize_t b, j, row0 = 0
    cdef int st = ST_OK
    cdef const Src* s
    cdef out_t* o
    for b in range(nb):
        o = out + row0 * p.width
        s = srcs + blks[b].src
        if blks[b].matrix:
            if s.dtype == DT_F32:
                st = _matrix(p, <const float*>s.data, s.n, s.s0, s.s1, o, err)
            else:
                st = _matrix(p, <const double*>s.data, s.n, s.s0, s.s1, o, err)
        else:
            for j in range(p.n_features):
                if s[j].dtype == DT_BYTES:
                    st = _categorical(p, j, s[j].data, s[j].n, blks[b].n_rows, o, err)
                elif s[j].dtype == DT_F32:
                    st = _column(p, j, <const float*>s[j].data, s[j].n, s[j].s0, o, err)
                else:
                    st = _column(p, j, <const double*>s[j].data, s[j].n, s[j].s0, o, err)
                if st:
                    break
            if not st:
                for j in range(p.n_cross):
                    _cross(&p.crosses[j], s, blks[b].n_rows, p.width, o)
        if st:
            err.status, err.block = st, b
            return st
        row0 += blks[b].n_rows
    return ST_OK


# ------------------------------------------------------------------------------------ plan

cdef inline bint _float_array(object a, int* dtype) except -1:
    """True for a native-endian float32/float64 ndarray (sets dtype); TypeError otherwise."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"expected a numpy float32/float64 array, got {type(a).__name__}")
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if t == cnp.NPY_FLOAT32:
        dtype[0] = DT_F32
    elif t == cnp.NPY_FLOAT64:
        dtype[0] = DT_F64
    else:
        raise TypeError(f"expected float32 or float64, got {(<cnp.ndarray>a).dtype}")
    if not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a):
        raise TypeError("expected native byte order")
    return True


cdef class Plan:
    """Per-feature parameters (prepared by FeatureNormalizer) plus the gather entry point."""

    cdef Params p
    cdef Table* _tables
    cdef Cross* _crosses
    cdef int64_t* _backup  # sketch counts before the current call, restored on a data error
    cdef Py_ssize_t _n_counts
    cdef object _keep  # the arrays and tables behind p's pointers
    cdef readonly tuple names, categorical
    cdef readonly bint has_matrix_form  # all features numeric
    cdef public object error  # (status, block, row, feature, a, b, c) of the last data error

    def __cinit__(self):
        self._tables = NULL
        self._backup = NULL
        self._crosses = NULL

    def __init__(self, names, Py_ssize_t width, const Py_ssize_t[::1] column,
                 const uint8_t[::1] kind, const uint8_t[::1] flags, const double[:, ::1] num,
                 const Py_ssize_t[:, ::1] cat, tables, const Py_ssize_t[:, ::1] sketch,
                 const double[::1] edges, int64_t[::1] counts, const Py_ssize_t[:, ::1] bins,
                 const double[::1] bin_edges, crosses):
        """``num`` rows: offset, divisor, scale, shift, lo, hi, fill. ``cat`` rows: drop, impute_code, n_cat.
        ``sketch`` rows: counts offset, edges offset, n_edges. ``bins`` rows: offset into
        ``bin_edges``, n_edges (F_BINNED features). ``crosses``: (a, b, column, drop,
        CategoryTable, separator bytes) each. Shapes and columns checked by the caller."""
        cdef Py_ssize_t F = column.shape[0], j
        self.names = tuple(names)
        self.categorical = tuple(t is not None for t in tables)
        self.has_matrix_form = not any(self.categorical)
        self._keep = (column, kind, flags, num, cat, list(tables), sketch, edges, counts)
        self._tables = <Table*>malloc(max(F, 1) * sizeof(Table))
        self._n_counts = counts.shape[0]
        self._backup = <int64_t*>malloc(max(self._n_counts, 1) * sizeof(int64_t))
        if self._tables == NULL or self._backup == NULL:
            raise MemoryError()
        memset(self._tables, 0, max(F, 1) * sizeof(Table))
        for j in range(F):
            if tables[j] is not None:
                self._tables[j] = (<CategoryTable>tables[j]).t
        cdef Params* p = &self.p
        p.n_features, p.width = F, width
        p.column, p.kind, p.flags = &column[0], &kind[0], &flags[0]
        p.offset, p.divisor, p.scale, p.shift = &num[0, 0], &num[1, 0], &num[2, 0], &num[3, 0]
        p.lo, p.hi, p.fill = &num[4, 0], &num[5, 0], &num[6, 0]
        p.drop, p.impute_code, p.n_cat = &cat[0, 0], &cat[1, 0], &cat[2, 0]
        p.tables = self._tables
        p.identity = width == F and all(column[j] == j for j in range(F))
        sketched = np.array([j for j in range(F) if kind[j] == K_NUMERIC and flags[j] & F_SKETCH],
                            dtype=np.intp)
        cdef const Py_ssize_t[::1] sk = sketched
        self._keep += (sketched,)
        p.n_sketched = sketched.shape[0]
        p.sketched = &sk[0] if p.n_sketched else NULL
        p.sk_off, p.ed_off, p.ed_n = &sketch[0, 0], &sketch[1, 0], &sketch[2, 0]
        p.edges = &edges[0] if edges.shape[0] else NULL
        p.counts = &counts[0] if counts.shape[0] else NULL
        binned = np.array([j for j in range(F) if kind[j] == K_NUMERIC and flags[j] & F_BINNED], dtype=np.intp)
        cdef const Py_ssize_t[::1] bn = binned
        self._keep += (binned, bins, bin_edges)
        p.n_binned = binned.shape[0]
        p.binned = &bn[0] if p.n_binned else NULL
        p.bin_off, p.bin_n = &bins[0, 0], &bins[1, 0]
        p.bin_edges = &bin_edges[0] if bin_edges.shape[0] else NULL
        self._init_crosses(list(crosses), F)

    cdef int _init_crosses(self, list crosses, Py_ssize_t F) except -1:
        cdef Py_ssize_t c, n = len(crosses)
        self._crosses = <Cross*>malloc(max(n, 1) * sizeof(Cross))
        if self._crosses == NULL:
            raise MemoryError()
        self._keep += (crosses,)  # the tables and separators behind the pointers
        for c in range(n):
            a, b, column, drop, table, sep = crosses[c]
            if not (0 <= a < F and 0 <= b < F and self.p.kind[a] != K_NUMERIC and self.p.kind[b] != K_NUMERIC):
                raise ValueError(f"cross {c}: inputs must be categorical features")
            if not PyBytes_CheckExact(sep):
                raise TypeError(f"cross {c}: the separator must be bytes")
            self._crosses[c] = Cross(a, b, column, drop, (<CategoryTable>table).n,
                                     (<CategoryTable>table).t, PyBytes_AS_STRING(sep), PyBytes_GET_SIZE(sep))
        self.p.n_cross = n
        self.p.crosses = self._crosses
        return 0

    def __dealloc__(self):
        free(self._tables)
        free(self._backup)
        free(self._crosses)

    def run(self, blocks, out, bint f64=False):
        """Gather ``blocks`` into ``out`` (float32 or float64; allocated when None, float64 if
        ``f64``) and return it; None on a data error, described in ``self.error``.
        Programmer errors raise TypeError/ValueError."""
        cdef Py_ssize_t nb = len(blocks), F = self.p.n_features, b, j, n, total = 0
        cdef Py_ssize_t n_src = 0, need, cap = 0, n_views = 0, cap_views = 0
        cdef Blk* blks = <Blk*>malloc(max(nb, 1) * sizeof(Blk))
        cdef Src* srcs = NULL
        cdef Py_buffer* views = NULL
        cdef Error err
        cdef int st, dt
        cdef void* o
        cdef cnp.ndarray a
        cdef cnp.npy_intp dims[2]
        cdef bint sketch = self._n_counts > 0
        keep = []  # aligned copies of misaligned inputs, alive until the pass is done
        if blks == NULL:
            raise MemoryError()
        try:
            for b in range(nb):
                block = blocks[b]
                n = block.n_rows
                if n < 0:
                    raise ValueError(f"block {b}: n_rows is negative")
                mat = block.matrix
                need = n_src + (1 if mat is not None else F)
                if need > cap:  # grow geometrically; a few reallocs per call at most
                    cap = max(2 * cap, need, 16)
                    srcs = <Src*>_grow(srcs, cap * sizeof(Src))
                blks[b].n_rows, blks[b].src, blks[b].matrix = n, n_src, mat is not None
                if mat is not None:
                    if not self.has_matrix_form:
                        raise ValueError(f"block {b}: the matrix form needs all-numeric features")
                    _float_array(mat, &dt)
                    a = mat
                    if a.ndim != 2 or a.shape[0] != n or a.shape[1] != F:
                        raise ValueError(f"block {b}: matrix shape {mat.shape}, expected ({n}, {F})")
                    if not cnp.PyArray_ISALIGNED(a):
                        a = _aligned(a, keep)
                    srcs[n_src] = Src(<const char*>cnp.PyArray_DATA(a), n, a.strides[0], a.strides[1], dt)
                    n_src += 1
                else:
                    cols = block.columns
                    if cols is None:
                        raise ValueError(f"block {b}: neither matrix nor columns is set")
                    if len(cols) != F:
                        raise ValueError(f"block {b}: {len(cols)} columns, expected {F}")
                    for j in range(F):
                        c = cols[j]
                        if self.p.kind[j] != K_NUMERIC:
                            if PyBytes_CheckExact(c):
                                srcs[n_src] = Src(PyBytes_AS_STRING(c), PyBytes_GET_SIZE(c), 0, 0, DT_BYTES)
                            else:
                                if n_views == cap_views:
                                    cap_views = max(2 * cap_views, 8)
                                    views = <Py_buffer*>_grow(views, cap_views * sizeof(Py_buffer))
                                _bytes_view(c, &views[n_views], self.names[j], b)
                                n_views += 1
                                srcs[n_src] = Src(<const char*>views[n_views - 1].buf,
                                                  views[n_views - 1].len, 0, 0, DT_BYTES)
                        else:
                            try:
                                _float_array(c, &dt)
                            except TypeError as exc:
                                raise TypeError(f"block {b} feature '{self.names[j]}': {exc}") from None
                            a = c
                            if a.size != n or not (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)):
                                raise ValueError(f"block {b} feature '{self.names[j]}': shape {c.shape},"
                                                 f" expected ({n},)")
                            if not cnp.PyArray_ISALIGNED(a):
                                a = _aligned(a, keep)
                            srcs[n_src] = Src(<const char*>cnp.PyArray_DATA(a), n,
                                              a.strides[0] if a.ndim else 0, 0, dt)
                        n_src += 1
                total += n
            if out is None:
                dims[0], dims[1] = total, self.p.width
                out = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT64 if f64 else cnp.NPY_FLOAT32, 0)
            else:
                _check_out(out, total, self.p.width)
            f64 = cnp.PyArray_TYPE(<cnp.ndarray>out) == cnp.NPY_FLOAT64
            if sketch:
                memcpy(self._backup, self.p.counts, self._n_counts * sizeof(int64_t))
            o = cnp.PyArray_DATA(<cnp.ndarray>out)
            if total * self.p.width >= NOGIL_MIN_VALUES:
                with nogil:
                    st = _run_as(&self.p, blks, nb, srcs, o, f64, &err)
            else:
                st = _run_as(&self.p, blks, nb, srcs, o, f64, &err)
            if st == ST_OK:
                return out
            if sketch:  # a rejected batch leaves the drift counts as they were
                memcpy(self.p.counts, self._backup, self._n_counts * sizeof(int64_t))
            self.error = (err.status, err.block, err.row, err.feature, err.a, err.b, err.c)
            return None
        finally:
            for b in range(n_views):
                PyBuffer_Release(&views[b])
            free(views)
            free(srcs)
            free(blks)


cdef inline int _run_as(const Params* p, const Blk* blks, Py_ssize_t nb, const Src* srcs, void* out,
                        bint f64, Error* err) noexcept nogil:
    """``_run`` specialized for the output's dtype."""
    if f64:
        return _run(p, blks, nb, srcs, <double*>out, err)
    return _run(p, blks, nb, srcs, <float*>out, err)


cdef void* _grow(void* ptr, size_t size) except NULL:
    cdef void* q = realloc(ptr, size)
    if q == NULL:
        raise MemoryError()  # the caller's finally frees the old block
    return q


cdef int _bytes_view(object c, Py_buffer* view, str name, Py_ssize_t b) except -1:
    if cnp.PyArray_Check(c) and cnp.PyArray_TYPE(<cnp.ndarray>c) not in (cnp.NPY_UINT8, cnp.NPY_INT8):
        raise TypeError(f"block {b} feature '{name}': expected a V2 BYTES buffer, got a {c.dtype} array")
    try:
        PyObject_GetBuffer(c, view, PyBUF_SIMPLE)
    except (TypeError, BufferError) as exc:
        raise TypeError(f"block {b} feature '{name}': expected a V2 BYTES buffer: {exc}") from None
    return 0


cdef cnp.ndarray _aligned(cnp.ndarray a, list keep):
    # Rare (np.frombuffer at an odd offset): copying is simpler than unaligned loads.
    a = np.array(a, copy=True)
    keep.append(a)
    return a


cdef int _check_out(object out, Py_ssize_t rows, Py_ssize_t width) except -1:
    if not cnp.PyArray_Check(out) or cnp.PyArray_TYPE(<cnp.ndarray>out) not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
        raise TypeError("out must be a float32 or float64 numpy array")
    cdef cnp.ndarray a = out
    if a.ndim != 2 or a.shape[0] != rows or a.shape[1] != width:
        raise ValueError(f"out has shape {out.shape}, expected ({rows}, {width})")
    if not (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISWRITEABLE(a)
            and cnp.PyArray_ISALIGNED(a) and cnp.PyArray_ISNOTSWAPPED(a)):
        raise ValueError("out must be C-contiguous, aligned, native-endian and writeable")
    return 0
