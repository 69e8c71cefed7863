/* ember/loss.h - training losses with their gradients, on plain arrays.
 *
 * InfoNCE (the method text's L_InfoNCE with temperature tau): for each of nq examples there
 * are c candidate energies, candidate 0 being the true y and 1..c-1 the counter-examples:
 *     loss_i = -log( exp(-E_i0 / tau) / sum_j exp(-E_ij / tau) )
 * MSE: loss = sum over rows and dims of (pred - y)^2.
 *
 * Each function returns the *sum* of the per-example losses and, when the gradient pointer is
 * not NULL, writes scale * d(sum)/d(input): callers pass scale = 1/batch to get the gradient
 * of the batch mean without another pass.
 *
 *     float e[2 * 3] = {0.1f, 2.0f, 3.0f,   1.0f, 0.5f, 0.2f}, de[6];
 *     double sum = ember_infonce(e, 2, 3, 1.0f, 0.5f, de);   // mean loss = sum / 2
 */
#ifndef EMBER_LOSS_H
#define EMBER_LOSS_H

#ifdef __cplusplus
extern "C" {
#endif

/* e: (nq, c) energies, column 0 positive. de: (nq, c) or NULL; entries below 1e-30 in
 * magnitude are written as 0 (as float denormals they only slow the backward pass). */
double ember_infonce(const float *e, int nq, int c, float temperature, float scale, float *de);

/* pred, y: (n, d). dpred: (n, d) or NULL. */
double ember_mse(const float *pred, const float *y, int n, int d, float scale, float *dpred);

/* Gradient penalty of Method C on n rows of g = dE/dy (n, d):
 *     sum_r max(0, ||g_r||_inf - margin)^2
 * Returns the sum. For the parameter gradient, a penalised row r depends on the one component
 * k = argmax |g_rk|: dir (n, d) gets the unit vector e_k (zeros for unpenalised rows) and dt (n)
 * gets scale * d(penalty)/d(g_rk) = scale * 2 (|g_rk| - margin) sign(g_rk); feeding (dir, dt)
 * to ember_net_tangent / ember_net_tangent_backward yields scale * d(sum)/d params.
 * dir and dt may be NULL. */
double ember_grad_penalty(const float *g, int n, int d, float margin, float scale, float *dir,
                          float *dt);

#ifdef __cplusplus
}
#endif
#endif
