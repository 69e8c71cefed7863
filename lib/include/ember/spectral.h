/* ember/spectral.h - spectral normalisation of a dense layer's weight (Method C's regulariser).
 *
 * The layer uses W_sn = W / sigma(W), sigma the largest singular value, estimated by power
 * iteration with vectors u (out) and v (in) that persist across training steps (one iteration
 * per step, as in Miyato et al. and PyTorch's spectral_norm; they are saved in checkpoints):
 *     v = normalise(W^T u),  u = normalise(W v),  sigma = u^T W v
 * The gradient treats u and v as constants of the step (sigma = u^T W v, d sigma/dW = u v^T):
 *     dL/dW = (G - <G, W_sn> u v^T) / sigma,   G = dL/dW_sn
 *
 *     float sigma = ember_sn_power_iteration(w, out, in, u, v, 1);
 *     ember_sn_apply(w, out, in, sigma, w_sn);          // forward with w_sn
 *     ember_sn_backward(w, out, in, u, v, sigma, g_sn, g); // g += dL/dW
 */
#ifndef EMBER_SPECTRAL_H
#define EMBER_SPECTRAL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Sets u (out) and v (in) to a deterministic starting direction if they are zero. */
void ember_sn_init(float *u, int out, float *v, int in);
/* `iters` power iterations on W (out, in), updating u and v; returns sigma = u^T W v. */
float ember_sn_power_iteration(const float *w, int out, int in, float *u, float *v, int iters);
/* w_sn (out, in) = w / sigma */
void ember_sn_apply(const float *w, int out, int in, float sigma, float *w_sn);
/* g (out, in) += (g_sn - <g_sn, w / sigma> u v^T) / sigma */
void ember_sn_backward(const float *w, int out, int in, const float *u, const float *v,
                       float sigma, const float *g_sn, float *g);

#ifdef __cplusplus
}
#endif
#endif
