"""OpenCL C source of every kernel the OpenCL backend launches (float32).

The same source is what an FPGA toolchain (e.g. `aoc`, `v++`) compiles offline into the device binary that
`backend_options={"kernel_binary": path}` loads: kernel names and signatures are the contract.
"""

KERNEL_SOURCE = r"""
#define TS 16

/* Y[b] = act(alpha * A[b] @ B[b] + beta * C), tiled through local memory; strides encode transposes,
   broadcast batch (stride 0) and the broadcast of C. */
__kernel __attribute__((reqd_work_group_size(TS, TS, 1)))
void matmul_tiled(__global const float* A, __global const float* B, __global const float* C,
                  __global float* Y, const int M, const int N, const int K,
                  const int a_sm, const int a_sk, const int a_sb,
                  const int b_sk, const int b_sn, const int b_sb,
                  const int c_sm, const int c_sn, const int has_c,
                  const float alpha, const float beta, const int act)
{
    const int ln = get_local_id(0), lm = get_local_id(1);
    const int n = get_group_id(0) * TS + ln, m = get_group_id(1) * TS + lm;
    const int b = get_global_id(2);
    A += b * a_sb; B += b * b_sb; Y += b * M * N;
    __local float As[TS][TS];
    __local float Bs[TS][TS];
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TS) {
        const int ka = k0 + ln, kb = k0 + lm;
        As[lm][ln] = (m < M && ka < K) ? A[m * a_sm + ka * a_sk] : 0.0f;
        Bs[lm][ln] = (kb < K && n < N) ? B[kb * b_sk + n * b_sn] : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < TS; ++k) acc += As[lm][k] * Bs[k][ln];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (m < M && n < N) {
        float v = alpha * acc;
        if (has_c) v += beta * C[m * c_sm + n * c_sn];
        if (act == 1) v = fmax(v, 0.0f);
        Y[m * N + n] = v;
    }
}

/* Same contract, one work item per output element: better when M is small (batch 1..15). */
__kernel void matmul_rows(__global const float* A, __global const float* B, __global const float* C,
                          __global float* Y, const int M, const int N, const int K,
                          const int a_sm, const int a_sk, const int a_sb,
                          const int b_sk, const int b_sn, const int b_sb,
                          const int c_sm, const int c_sn, const int has_c,
                          const float alpha, const float beta, const int act)
{
    const int n = get_global_id(0), m = get_global_id(1), b = get_global_id(2);
    if (n >= N || m >= M) return;
    A += b * a_sb + m * a_sm; B += b * b_sb + n * b_sn;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) acc += A[k * a_sk] * B[k * b_sk];
    float v = alpha * acc;
    if (has_c) v += beta * C[m * c_sm + n * c_sn];
    if (act == 1) v = fmax(v, 0.0f);
    Y[b * M * N + m * N + n] = v;
}

/* Register-blocked variant for B contiguous along n (b_sn == 1) and N % 8 == 0: one work item computes a
   4 x 8 block with float8 arithmetic, which CPU and FPGA compilers map to SIMD lanes directly. */
__kernel void matmul_v8(__global const float* A, __global const float* B, __global const float* C,
                        __global float* Y, const int M, const int N, const int K,
                        const int a_sm, const int a_sk, const int a_sb,
                        const int b_sk, const int b_sn, const int b_sb,
                        const int c_sm, const int c_sn, const int has_c,
                        const float alpha, const float beta, const int act)
{
    const int n = get_global_id(0) * 8, m0 = get_global_id(1) * 4, b = get_global_id(2);
    if (n >= N || m0 >= M) return;
    A += b * a_sb; B += b * b_sb + n; Y += b * M * N;
    const int rows = min(4, M - m0);
    float8 acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
    __global const float* a0 = A + m0 * a_sm;
    __global const float* a1 = A + min(m0 + 1, M - 1) * a_sm;
    __global const float* a2 = A + min(m0 + 2, M - 1) * a_sm;
    __global const float* a3 = A + min(m0 + 3, M - 1) * a_sm;
    for (int k = 0; k < K; ++k) {
        const float8 bv = vload8(0, B + k * b_sk);
        const int ka = k * a_sk;
        acc0 += a0[ka] * bv; acc1 += a1[ka] * bv; acc2 += a2[ka] * bv; acc3 += a3[ka] * bv;
    }
    float8 accs[4] = {acc0, acc1, acc2, acc3};
    for (int r = 0; r < rows; ++r) {
        const int m = m0 + r;
        float8 v = alpha * accs[r];
        if (has_c) {
            float8 c;
            c.s0 = C[m * c_sm + (n + 0) * c_sn]; c.s1 = C[m * c_sm + (n + 1) * c_sn];
            c.s2 = C[m * c_sm + (n + 2) * c_sn]; c.s3 = C[m * c_sm + (n + 3) * c_sn];
            c.s4 = C[m * c_sm + (n + 4) * c_sn]; c.s5 = C[m * c_sm + (n + 5) * c_sn];
            c.s6 = C[m * c_sm + (n + 6) * c_sn]; c.s7 = C[m * c_sm + (n + 7) * c_sn];
            v += beta * c;
        }
        if (act == 1) v = fmax(v, (float8)(0.0f));
        vstore8(v, 0, Y + m * N + n);
    }
}

inline float binop(const int op, const float a, const float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return pow(a, b);
        case 5: return fmax(a, b);
        case 6: return fmin(a, b);
        default: return NAN;
    }
}

__kernel void binary_same(__global const float* A, __global const float* B, __global float* Y, const int op) {
    const int i = get_global_id(0);
    Y[i] = binop(op, A[i], B[i]);
}

/* meta = out_shape[rank], a_strides[rank], b_strides[rank] (0 where broadcast). */
__kernel void binary_bcast(__global const float* A, __global const float* B, __global float* Y, const int op,
                           const int rank, __global const int* meta) {
    const int i = get_global_id(0);
    int r = i, oa = 0, ob = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const int idx = r % meta[d];
        r /= meta[d];
        oa += idx * meta[rank + d];
        ob += idx * meta[2 * rank + d];
    }
    Y[i] = binop(op, A[oa], B[ob]);
}

__kernel void unary(__global const float* X, __global float* Y, const int op, const float p0, const float p1) {
    const int i = get_global_id(0);
    const float x = X[i];
    float y;
    switch (op) {
        case 0: y = fmax(x, 0.0f); break;
        case 1: y = 1.0f / (1.0f + exp(-x)); break;
        case 2: y = tanh(x); break;
        case 3: y = exp(x); break;
        case 4: y = log(x); break;
        case 5: y = sqrt(x); break;
        case 6: y = -x; break;
        case 7: y = fabs(x); break;
        case 8: y = x >= 0.0f ? x : p0 * x; break;
        case 9: y = fmin(fmax(x, p0), p1); break;
        case 10: y = x; break;
        case 11: y = erf(x); break;
        case 12: y = x > 0.0f ? x : p0 * (exp(x) - 1.0f); break;
        case 13: y = log(1.0f + exp(x)); break;
        case 14: y = 1.0f / x; break;
        case 15: y = fmax(0.0f, fmin(1.0f, p0 * x + p1)); break;
        default: y = NAN;
    }
    Y[i] = y;
}

/* One work item per (outer, inner) row of the softmax axis. */
__kernel void softmax(__global const float* X, __global float* Y, const int axis_len, const int inner,
                      const int log_mode) {
    const int g = get_global_id(0);
    const int base = (g / inner) * axis_len * inner + (g % inner);
    float mx = -INFINITY;
    for (int j = 0; j < axis_len; ++j) mx = fmax(mx, X[base + j * inner]);
    float s = 0.0f;
    for (int j = 0; j < axis_len; ++j) s += exp(X[base + j * inner] - mx);
    if (log_mode) {
        const float ls = log(s);
        for (int j = 0; j < axis_len; ++j) Y[base + j * inner] = X[base + j * inner] - mx - ls;
    } else {
        const float inv = 1.0f / s;
        for (int j = 0; j < axis_len; ++j) Y[base + j * inner] = exp(X[base + j * inner] - mx) * inv;
    }
}

/* meta = out_shape[rank], source strides of each output axis[rank]. */
__kernel void transpose(__global const float* X, __global float* Y, const int rank, __global const int* meta) {
    const int i = get_global_id(0);
    int r = i, o = 0;
    for (int d = rank - 1; d >= 0; --d) {
        o += (r % meta[d]) * meta[rank + d];
        r /= meta[d];
    }
    Y[i] = X[o];
}

/* Concat: X viewed as [outer, block] lands at column dst_offset of Y viewed as [outer, dst_stride]. */
__kernel void copy_block(__global const float* X, __global float* Y, const int block, const int dst_stride,
                         const int dst_offset) {
    const int i = get_global_id(0);
    Y[(i / block) * dst_stride + dst_offset + (i % block)] = X[i];
}

/* BatchNormalization (inference) folded on the host into y = x * scale[c] + shift[c]. */
__kernel void channel_affine(__global const float* X, __global const float* S, __global const float* T,
                             __global float* Y, const int C, const int inner) {
    const int i = get_global_id(0);
    const int c = (i / inner) % C;
    Y[i] = X[i] * S[c] + T[c];
}

/* NCHW direct convolution with groups, strides, pads, dilations; gid = (oh*OW+ow, out channel, n). */
__kernel void conv2d(__global const float* X, __global const float* Wt, __global const float* Bias,
                     __global float* Y, const int C, const int H, const int W, const int M,
                     const int OH, const int OW, const int KH, const int KW, const int sh, const int sw,
                     const int ph, const int pw, const int dh, const int dw, const int groups,
                     const int has_bias, const int act) {
    const int o = get_global_id(0), mo = get_global_id(1), n = get_global_id(2);
    if (o >= OH * OW) return;
    const int oh = o / OW, ow = o % OW;
    const int cpg = C / groups, g = mo / (M / groups);
    float acc = has_bias ? Bias[mo] : 0.0f;
    __global const float* wp = Wt + mo * cpg * KH * KW;
    for (int c = 0; c < cpg; ++c) {
        __global const float* xp = X + (n * C + g * cpg + c) * H * W;
        for (int kh = 0; kh < KH; ++kh) {
            const int ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int iw = ow * sw - pw + kw * dw;
                if (iw < 0 || iw >= W) continue;
                acc += xp[ih * W + iw] * wp[(c * KH + kh) * KW + kw];
            }
        }
    }
    if (act == 1) acc = fmax(acc, 0.0f);
    Y[(n * M + mo) * OH * OW + o] = acc;
}

/* Max (mode 0) or average (mode 1) pooling; gid = (oh*OW+ow, n*C+c). */
__kernel void pool2d(__global const float* X, __global float* Y, const int H, const int W, const int OH,
                     const int OW, const int KH, const int KW, const int sh, const int sw, const int ph,
                     const int pw, const int dh, const int dw, const int mode, const int count_include_pad,
                     const int ph_end, const int pw_end) {
    const int o = get_global_id(0), nc = get_global_id(1);
    if (o >= OH * OW) return;
    const int oh = o / OW, ow = o % OW;
    __global const float* xp = X + nc * H * W;
    float acc = mode == 0 ? -INFINITY : 0.0f;
    int count = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int ih = oh * sh - ph + kh * dh;
        for (int kw = 0; kw < KW; ++kw) {
            const int iw = ow * sw - pw + kw * dw;
            const int inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            if (inside) {
                const float v = xp[ih * W + iw];
                acc = mode == 0 ? fmax(acc, v) : acc + v;
                ++count;
            } else if (count_include_pad && ih >= -ph && ih < H + ph_end && iw >= -pw && iw < W + pw_end) {
                ++count;
            }
        }
    }
    Y[nc * OH * OW + o] = mode == 0 ? acc : acc / (float)max(count, 1);
}

/* GlobalAveragePool (mode 1) / GlobalMaxPool (mode 0) over one (n, c) plane per work item. */
__kernel void global_pool(__global const float* X, __global float* Y, const int HW, const int mode) {
    const int nc = get_global_id(0);
    __global const float* xp = X + nc * HW;
    float acc = mode == 0 ? -INFINITY : 0.0f;
    for (int i = 0; i < HW; ++i) acc = mode == 0 ? fmax(acc, xp[i]) : acc + xp[i];
    Y[nc] = mode == 0 ? acc : acc / (float)HW;
}
"""

KERNEL_NAMES = ("matmul_tiled", "matmul_rows", "matmul_v8", "binary_same", "binary_bcast", "unary", "softmax",
                "transpose", "copy_block", "channel_affine", "conv2d", "pool2d", "global_pool")
