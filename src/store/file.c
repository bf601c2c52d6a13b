/* file.c - private files of a store or ledger (file.h). */
#include "store/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"

int qkm_private_file_open(const char *path, const char *who)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("%s: %s", who, path);
		return -1;
	}
	struct stat sb;
	if (fstat(fd, &sb) == 0 && (sb.st_mode & 077))
		log_warnx("%s: %s is accessible to group or others", who, path);
	return fd;
}

int qkm_private_file_create(const char *path, const char *who)
{
	int fd = qkm_private_file_open(path, who);
	if (fd < 0)
		return QKM_ESTORE;
	close(fd);
	return 0;
}
