/* ember/client.h - libember_client: call emberd (ember.v1 over gRPC) from C.
 *
 * A robot's control loop, a lab tool or the `ember` CLI's remote mode opens one client to a
 * target and calls Predict, Sample, GetModel and ListModels through it. The header carries no
 * gRPC or protobuf type: a client is an opaque handle, inputs and outputs are flat float
 * arrays the caller owns (an image model's images flat uint8 arrays), and every call reports a status (a gRPC status code and the
 * server's message). docs/client-c.md has the whole story and a control-loop example.
 *
 *     ember_client *c;  ember_client_status st;
 *     ember_client_config cfg = EMBER_CLIENT_CONFIG_INIT;      // plaintext, 10 s deadlines
 *     if (ember_client_open(&c, "127.0.0.1:50051", &cfg, &st) != 0) {
 *       fprintf(stderr, "%s: %s\n", ember_client_code_name(st.code), st.details);  return 1;
 *     }
 *     float x[2] = {0.25f, -0.5f}, y[1], e[1];                    // one row: x_dim 2, y_dim 1
 *     ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;   // the model's defaults
 *     o.seed = 7;
 *     if (ember_client_predict(c, "jump", &o, x, 1, 2, y, 1, e, &st) != 0) ...;
 *     ember_client_close(c);
 *
 * Targets: "HOST:PORT" (one server; a refused connection fails at once), several
 * "IPv4:PORT" (or "[IPv6]:PORT") separated by commas, or a gRPC target with a scheme
 * ("dns:///NAME:PORT", "ipv4:...", "ipv6:..."). The last two are a cluster: calls are balanced
 * round robin over every address, wait for a ready replica, and are retried on UNAVAILABLE
 * and CANCELLED (a replica stopping or gone), as deploy/grpc/service-config.json says.
 *
 * Threads: a client may be used from any number of threads at once (calls do not share
 * per-call state; each waits on a completion queue of its own). Open and close it once.
 *
 * Errors: every call returns 0 (EMBER_CLIENT_OK) or a gRPC status code (1..16, the
 * EMBER_CLIENT_* values below, the numbers gRPC uses) and, when st is not NULL, fills it:
 * the code, who produced it (the server, a connection that never reached it, or this library
 * finding the input or the answer wrong) and a message. Nothing is written to stdout or
 * stderr, and nothing exits.
 */
#ifndef EMBER_CLIENT_H
#define EMBER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define EMBER_CLIENT_API __attribute__((visibility("default")))
#else
#define EMBER_CLIENT_API
#endif

/* Status codes: gRPC's numbers (grpc/status.h), so a code can be compared with any gRPC
 * client's. */
enum {
  EMBER_CLIENT_OK = 0,
  EMBER_CLIENT_CANCELLED = 1,
  EMBER_CLIENT_UNKNOWN = 2,
  EMBER_CLIENT_INVALID_ARGUMENT = 3,  /* bad input: shape, NaN, option; the message says which */
  EMBER_CLIENT_DEADLINE_EXCEEDED = 4, /* the call's deadline passed */
  EMBER_CLIENT_NOT_FOUND = 5,         /* no such model or version */
  EMBER_CLIENT_ALREADY_EXISTS = 6,
  EMBER_CLIENT_PERMISSION_DENIED = 7, /* token not accepted */
  EMBER_CLIENT_RESOURCE_EXHAUSTED = 8, /* the server's queue is full, a message too large, memory */
  EMBER_CLIENT_FAILED_PRECONDITION = 9,
  EMBER_CLIENT_ABORTED = 10,
  EMBER_CLIENT_OUT_OF_RANGE = 11,
  EMBER_CLIENT_UNIMPLEMENTED = 12,
  EMBER_CLIENT_INTERNAL = 13,         /* a bug, or an answer this library cannot read */
  EMBER_CLIENT_UNAVAILABLE = 14,      /* server unreachable or shutting down */
  EMBER_CLIENT_DATA_LOSS = 15,
  EMBER_CLIENT_UNAUTHENTICATED = 16   /* the server wants a token */
};

/* Who produced a status. */
enum {
  EMBER_CLIENT_FROM_SERVER = 0,  /* the server, or gRPC on its behalf */
  EMBER_CLIENT_UNREACHABLE = 1,  /* no connection was ever made: the message says why */
  EMBER_CLIENT_FROM_CLIENT = 2   /* this library: bad arguments, a malformed answer, memory */
};

#define EMBER_CLIENT_DETAILS_MAX 1024

typedef struct ember_client_status {
  int code;                               /* EMBER_CLIENT_OK or an error code above */
  int origin;                             /* EMBER_CLIENT_FROM_* */
  char details[EMBER_CLIENT_DETAILS_MAX]; /* the server's message, or ours; "" when OK */
} ember_client_status;

/* "INVALID_ARGUMENT" for EMBER_CLIENT_INVALID_ARGUMENT, ...; "UNKNOWN_CODE" past 16. */
EMBER_CLIENT_API const char *ember_client_code_name(int code);

/* ---- opening a client ---------------------------------------------------------------------- */

typedef struct ember_client_config {
  int deadline_ms;           /* deadline of each call, ms; 0 = 10000. A call may set its own. */
  /* TLS is on when any of these is set (or `tls`); without tls_ca_file the system's CA
   * certificates verify the server. PEM files, read once by ember_client_open. */
  const char *tls_ca_file;   /* CA certificate(s) that verify the server */
  const char *tls_cert_file; /* client certificate chain, with tls_key_file (mutual TLS) */
  const char *tls_key_file;
  int tls;                   /* TLS with the system's CAs and no file */
  /* A bearer token sent as "authorization: Bearer <token>" on every call: `token`, else the
   * first line of token_file that is neither empty nor a '#' comment (blanks trimmed). */
  const char *token;
  const char *token_file;
} ember_client_config;

#define EMBER_CLIENT_CONFIG_INIT {0, NULL, NULL, NULL, 0, NULL, NULL}

typedef struct ember_client ember_client;

/* Opens a client to `target` (above). Connecting is lazy: the first call connects, so an
 * unreachable server shows up there. cfg may be NULL (the defaults). 0 with *out set, or a
 * code (INVALID_ARGUMENT: bad target, unreadable certificate or token file) with *out NULL. */
EMBER_CLIENT_API int ember_client_open(ember_client **out, const char *target,
                                       const ember_client_config *cfg, ember_client_status *st);

/* Closes the client; every call on it must have returned. NULL is allowed. */
EMBER_CLIENT_API void ember_client_close(ember_client *c);

/* ---- inference -------------------------------------------------------------------------------- */

/* Per-call options. Zero values take the model's defaults (GetModel reports them); the seed
 * is always sent (0 is a seed). Row i of a call draws from random stream (seed, row_offset +
 * i), so rows split over several calls with the right row_offset get the answers of one call,
 * and the answers of a local `ember predict --seed S` on the same checkpoint. */
typedef struct ember_client_infer_opts {
  int64_t version;       /* model version; 0 = the server's default for the model */
  uint32_t samples;      /* candidates per row (Langevin models: chains) */
  uint32_t iterations;   /* DFO rounds */
  float sigma, shrink;   /* DFO initial noise and its factor per round */
  float temperature;     /* softmax temperature of the weights */
  int32_t refine_steps;  /* gradient steps after sampling; -1 = the model's default, 0 = off */
  uint64_t seed;
  uint64_t row_offset;   /* random-stream index of the first row */
  int deadline_ms;       /* this call's deadline; 0 = the client's */
} ember_client_infer_opts;

#define EMBER_CLIENT_INFER_OPTS_INIT {0, 0, 0, 0.0f, 0.0f, 0.0f, -1, 0, 0, 0}

/* The y of lowest energy for each of `rows` rows of x (rows, x_dim; row-major). y (rows,
 * y_dim) and energy (rows; NULL when not wanted; 0 for an explicit "mse" model) are the
 * caller's. opts may be NULL (defaults, seed 0). x_dim and y_dim must be the model's
 * (ember_client_get_model): a wrong x_dim is the server's INVALID_ARGUMENT, a wrong y_dim
 * this library's. On error y and energy hold nothing useful. */
EMBER_CLIENT_API int ember_client_predict(ember_client *c, const char *model,
                                          const ember_client_infer_opts *opts, const float *x,
                                          int rows, int x_dim, float *y, int y_dim, float *energy,
                                          ember_client_status *st);

/* Mode finding: up to `modes` distinct low-energy y per row. Zero values take the defaults
 * (EMBER_MODES_DEFAULTS in ember/dfo.h: the server's). */
typedef struct ember_client_modes_opts {
  float radius;          /* mode-finding scale, normalised y units */
  float min_mass;        /* drop modes with less probability mass; < 0 keeps every mode */
  int32_t polish_steps;  /* gradient steps on E per mode; -1 = default, 0 = none */
} ember_client_modes_opts;

#define EMBER_CLIENT_MODES_OPTS_INIT {0.0f, 0.0f, -1}

/* For each of `rows` rows of x, up to `modes` modes, lowest energy first: row i's mode m at
 * slot i * modes + m of mode_y (rows * modes * y_dim), mode_energy and mode_weight (rows *
 * modes; the weight is the mode's probability mass) and count[i] how many row i got. mo may
 * be NULL (defaults). */
EMBER_CLIENT_API int ember_client_sample(ember_client *c, const char *model,
                                         const ember_client_infer_opts *opts,
                                         const ember_client_modes_opts *mo, const float *x,
                                         int rows, int x_dim, int modes, float *mode_y, int y_dim,
                                         float *mode_energy, float *mode_weight, int *count,
                                         ember_client_status *st);

/* ---- image models ----------------------------------------------------------------------------- */

/* An image model's input (a model whose ember_client_model has image_height > 0): `rows`
 * images, and after each the model's image_extra float observations. The pixels travel as
 * they are, uint8 bytes (no float conversion); the shape must be the model's (the server
 * answers INVALID_ARGUMENT naming the shape it takes). */
typedef struct ember_client_images {
  const uint8_t *pixels;       /* rows x height x width x channels bytes, row-major (NHWC:
                                * a numpy uint8 array (rows, height, width, channels)) */
  int height, width, channels;
  const float *extra;          /* rows x n_extra values, row-major; NULL when n_extra is 0 */
  int n_extra;
} ember_client_images;

/* ember_client_predict for an image model: rows rows, each an image and its extras. A request
 * carries rows x height x width x channels bytes and must fit the server's message limit
 * (emberd --max-message; docs/images.md has how many images of common sizes fit): split
 * larger inputs over calls with row_offset. */
EMBER_CLIENT_API int ember_client_predict_images(ember_client *c, const char *model,
                                                 const ember_client_infer_opts *opts,
                                                 const ember_client_images *images, int rows,
                                                 float *y, int y_dim, float *energy,
                                                 ember_client_status *st);

/* ember_client_sample for an image model. */
EMBER_CLIENT_API int ember_client_sample_images(ember_client *c, const char *model,
                                                const ember_client_infer_opts *opts,
                                                const ember_client_modes_opts *mo,
                                                const ember_client_images *images, int rows,
                                                int modes, float *mode_y, int y_dim,
                                                float *mode_energy, float *mode_weight, int *count,
                                                ember_client_status *st);

/* ---- models ----------------------------------------------------------------------------------- */

/* What GetModel and ListModels say about a model (one version of it). Strings and arrays are
 * owned by the struct: ember_client_model_free (or ember_client_models_free for a list). */
typedef struct ember_client_model {
  char *name;
  int64_t version;          /* the version described (0: none served by default) */
  int64_t default_version;  /* what version 0 means now */
  int64_t *versions;        /* every loaded version, ascending */
  size_t n_versions;
  char *method;             /* "dfo", "ardfo", "langevin" or "mse" */
  char *arch;               /* "resnet" or "mlp" */
  int x_dim, y_dim, width, depth;
  char **x_names, **y_names; /* x_dim and y_dim column names (NULL from a server without) */
  float *y_lo, *y_hi;       /* y's sampling bounds (y_dim values each, or NULL) */
  uint32_t samples, iterations; /* the model's inference defaults */
  size_t n_load_errors;     /* versions that failed to load or are refused */
  /* Image models: the images Predict and Sample take (ember_client_predict_images) and the
   * encoder; all 0 and NULL for a vector model (x_dim floats per row). x_dim = image_features
   * + image_extra. */
  int image_height, image_width, image_channels;
  int image_extra;          /* extra float observations per image */
  int image_features;       /* the encoder's features per image */
  char *image_conv;         /* "16:5:2:2,32:3:1:1" (channels:kernel:stride[:pad] per layer) */
  char *image_head;         /* "softargmax" or "pool" */
} ember_client_model;

/* GetModel: `version` of `model` (0 = its default). *out is the caller's to free. */
EMBER_CLIENT_API int ember_client_get_model(ember_client *c, const char *model, int64_t version,
                                            ember_client_model **out, ember_client_status *st);
EMBER_CLIENT_API void ember_client_model_free(ember_client_model *m);

/* ListModels: *n models (each described at its default version, in the server's order) in *out,
 * an array the caller frees with ember_client_models_free. */
EMBER_CLIENT_API int ember_client_list_models(ember_client *c, ember_client_model **out, size_t *n,
                                              ember_client_status *st);
EMBER_CLIENT_API void ember_client_models_free(ember_client_model *models, size_t n);

#ifdef __cplusplus
}
#endif

#endif
