/* err.h - qkm's error codes: one X-macro list makes the enum and the
 * messages (libuv's UV_ERRNO_MAP). Functions return 0 or a negative QKM_E*. */
#ifndef QKM_CORE_ERR_H
#define QKM_CORE_ERR_H

#define QKM_ERRNO_MAP(X)                                                        \
	X(EINVAL, "invalid argument")                                           \
	X(ENOMEM, "out of memory")                                              \
	X(ETRUNC, "input truncated")                                            \
	X(ETOOBIG, "input too large")                                           \
	X(EFORMAT, "malformed input")                                           \
	X(EVERSION, "unsupported version")                                      \
	X(EIO, "input/output error")                                            \
	X(ESTORE, "key store error")                                            \
	X(ENOTFOUND, "not found")                                               \
	X(EEXIST, "already exists")                                             \
	X(EMISMATCH, "mismatch between peers")                                  \
	X(ECRYPTO, "cryptographic operation failed")                            \
	X(ETLS, "TLS error")                                                    \
	X(EPEER, "peer violated the protocol")                                  \
	X(ECONFIG, "invalid configuration")                                     \
	X(EAGAIN, "try again")                                                  \
	X(ENOKEY, "not enough key material")                                    \
	X(EPERM, "not permitted")                                               \
	X(ESTATE, "operation not valid in this state")

enum qkm_err {
	QKM_OK = 0,
#define QKM_ERR_ENUM(name, msg) QKM_##name,
	QKM_ERR_FIRST_ = -1000,
	QKM_ERRNO_MAP(QKM_ERR_ENUM)
#undef QKM_ERR_ENUM
	QKM_ERR_LAST_
};

/* Returns a static, human-readable message for a QKM_E* code (or "success"). */
const char *qkm_strerror(int err);

#define QKM_MUST_CHECK __attribute__((warn_unused_result))

#endif
