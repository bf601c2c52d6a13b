/* net.c - `qkm net up TOPOLOGY --dir DIR`, `qkm net down --dir DIR` and
 * `qkm net restart --dir DIR NAME`: a whole QKD network on this machine
 * (test PKI, simulator, one node per topology node) on free loopback ports,
 * described in DIR/network.json (INTERFACES.md). */
#include "cli/cli.h"
#include "core/log.h"
#include "core/route.h"
#include "ctl/ca.h"
#include "net/http.h"
#include "proto/config_json.h"
#include "proto/status_json.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 30000

static int mkdirp(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, mode) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return mkdir(tmp, mode) < 0 && errno != EEXIST ? -1 : 0;
}

static bool port_bindable(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
		  bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Ports handed out lately by any `qkm net up` of this user on this
 * machine: /tmp/qkm-ports.<uid>, one "port unix-seconds" line each, under
 * flock. Two networks started at once (tests run two at a time) each check
 * their ports free long before their daemons bind them, and could pick the
 * same one: seen once, a node that could not listen. A port stays out of
 * other runs' choice for PORTS_HOLD_S. Anything odd about the file (not
 * ours, a symlink, unreadable) and it is not used: the choice is random
 * either way. */
#define PORTS_HOLD_S 120
#define PORTS_MAX 4096

static int ports_open(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/qkm-ports.%u", (unsigned)getuid());
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	struct stat sb;
	if (fd >= 0 && (fstat(fd, &sb) != 0 || sb.st_uid != getuid() || !S_ISREG(sb.st_mode) ||
			flock(fd, LOCK_EX) != 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The ports in the file still held (n of them into held), then the file
 * rewritten with those and `add` (if > 0). */
static size_t ports_sync(int fd, int *held, size_t max, int add)
{
	size_t n = 0;
	long now = (long)time(NULL);
	int dfd = dup(fd);
	FILE *f = dfd >= 0 ? fdopen(dfd, "r+") : NULL;
	if (!f) {
		if (dfd >= 0)
			close(dfd);
		return 0;
	}
	rewind(f); /* the offset is fd's: where the last call left it */
	int port;
	long at;
	long ats[PORTS_MAX];
	/* NOLINTNEXTLINE(cert-err34-c): a malformed line ends the list */
	while (n < max && fscanf(f, "%d %ld", &port, &at) == 2)
		if (port > 0 && port < 65536 && at <= now && now - at < PORTS_HOLD_S) {
			ats[n] = at;
			held[n++] = port;
		}
	if (ftruncate(fd, 0) == 0) {
		rewind(f);
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%d %ld\n", held[i], ats[i]);
		if (add > 0)
			fprintf(f, "%d %ld\n", add, now);
	}
	(void)fclose(f); /* best effort: the lock stays on fd */
	return n;
}

/* A free TCP port on 127.0.0.1 for a daemon to listen on, below the
 * kernel's ephemeral range: a port from bind(0) comes from that range, and
 * between our check and the daemon's bind any outgoing connection on the
 * machine (tests and benchmarks open thousands) may take it as its local
 * port. Below the range only another listener can, and the choice is
 * random. Never the same port twice in one run, nor one another run
 * handed out in the last PORTS_HOLD_S (ports_open). */
static int free_port(void)
{
	static int given[4 * QKM_MAX_NODES + 8];
	static size_t n_given;
	if (n_given == 0)
		srandom((unsigned)getpid() * 2654435761u ^ (unsigned)qkm_mono_ns());
	int lo = 32768, hi = 60999;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		/* The kernel's own two numbers; anything else falls back.
		 * NOLINTNEXTLINE(cert-err34-c) */
		if (fscanf(f, "%d %d", &lo, &hi) != 2)
			lo = 32768;
		(void)fclose(f); /* read only */
	}
	int top = lo - 1, bottom = 10000;
	int pfd = ports_open();
	static int held[PORTS_MAX];
	size_t n_held = pfd >= 0 ? ports_sync(pfd, held, PORTS_MAX, 0) : 0;
	for (int tries = 0; top - bottom > 1000 && tries < 200; tries++) {
		int port = bottom + (int)(random() % (top - bottom));
		bool seen = false;
		for (size_t i = 0; i < n_given; i++)
			seen = seen || given[i] == port;
		for (size_t i = 0; i < n_held; i++)
			seen = seen || held[i] == port;
		if (seen || !port_bindable(port))
			continue;
		if (n_given < sizeof(given) / sizeof(given[0]))
			given[n_given++] = port;
		if (pfd >= 0) {
			(void)ports_sync(pfd, held, PORTS_MAX, port);
			close(pfd); /* and its lock */
		}
		return port;
	}
	if (pfd >= 0)
		close(pfd);
	/* No room below the range: let the kernel pick. */
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Reads /proc/PATH's "PID (NAME) STATE ..." (NAME may hold spaces and
 * parentheses): false if it cannot. */
static bool proc_stat(const char *path, char *name, size_t namesz, char *state)
{
	char st[512];
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(st, 1, sizeof(st) - 1, f);
	(void)fclose(f); /* read only */
	st[n] = 0;
	char *open = strchr(st, '('), *close = strrchr(st, ')');
	if (!open || !close || close < open || close[1] != ' ')
		return false;
	*close = 0;
	snprintf(name, namesz, "%s", open + 1);
	*state = close[2];
	return true;
}

/* Whether pid is a qkm process that has not finished exiting. A process
 * keeps its files (the key store's lock) until its last thread is gone:
 * its command line reads empty well before (once its memory is gone,
 * seconds under a sanitizer), and its main thread shows as a zombie while
 * another still waits for a write to the disk to end. So this reads the
 * name (the executable's: "qkm" or a build name containing it) and the
 * state of every thread in /proc. */
static bool pid_is_qkm(int pid)
{
	char path[64], name[64], state;
	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (!proc_stat(path, name, sizeof(name), &state) || !strstr(name, "qkm"))
		return false;
	if (!strchr("ZXx", state))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	bool alive = false;
	/* cppcheck-suppress readdirCalled ; readdir_r is deprecated: readdir is safe on a
	 * stream no other thread reads (as in kma/spool.c) */
	for (struct dirent *e; d && !alive && (e = readdir(d));) {
		char tpath[300];
		if (e->d_name[0] == '.')
			continue;
		snprintf(tpath, sizeof(tpath), "/proc/%d/task/%s/stat", pid, e->d_name);
		alive = proc_stat(tpath, name, sizeof(name), &state) && !strchr("ZXx", state);
	}
	if (d)
		(void)closedir(d); /* read only */
	return alive;
}

/* Starts `qkm ARGS...` detached, output appended to log. Returns the pid. */
static int spawn(const char *log, char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setsid();
		int in = open("/dev/null", O_RDONLY);
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (in < 0 || out < 0)
			_exit(127);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		/* A daemon of a local network is no systemd service even if
		 * `qkm net up` runs inside one: it must not report readiness
		 * in that service's name (cli/notify.c). */
		unsetenv("NOTIFY_SOCKET");
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	return pid;
}

static void print_log_tail(const char *log)
{
	FILE *f = fopen(log, "r");
	char line[1024];
	char ring[8][1024];
	int n = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		snprintf(ring[n++ % 8], sizeof(ring[0]), "%s", line);
	(void)fclose(f); /* read only */
	for (int i = n > 8 ? n - 8 : 0; i < n; i++)
		fprintf(stderr, "    | %s", ring[i % 8]);
}

/* Waits until url (an admin API's /status) answers 200, or pid died. */
static int wait_url(const struct qkm_network *net, const char *base, int pid)
{
	char url[QKM_ADDR_MAX + 64];
	snprintf(url, sizeof(url), "%s/status", base);
	for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 100) {
		int status, st;
		char *body = NULL;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return -1;
		if (qkm_https_request(url, "GET", NULL, net->ca, net->admin_cert, net->admin_key, 2000,
				      &status, &body) == 0) {
			free(body);
			if (status == 200)
				return 0;
		}
		struct timespec ts = {0, 100000000};
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* Waits until the node answers its admin API, or its process died. */
static int wait_ready(const struct qkm_network *net, size_t i)
{
	return wait_url(net, net->nodes[i].admin, net->nodes[i].pid);
}

/* Waits until none of pids[0..n) is a qkm process still running (reaping
 * those that are our children), at most ms: true if none is. */
static bool wait_gone(const int *pids, int n, int ms)
{
	for (int waited = 0;; waited += 50) {
		int alive = 0;
		for (int i = 0; i < n; i++) {
			waitpid(pids[i], NULL, WNOHANG);
			alive += pid_is_qkm(pids[i]);
		}
		if (!alive)
			return true;
		if (waited >= ms)
			return false;
		struct timespec ts = {0, 50000000};
		nanosleep(&ts, NULL);
	}
}

/* Stops the qkm processes among pids[0..n): SIGTERM; after 5 s SIGKILL to
 * those left, and up to 5 s more until they are gone: a node holds its key
 * store until then, and its successor cannot open it. */
static void stop_pids(const int *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pid_is_qkm(pids[i]))
			kill(pids[i], SIGTERM);
	if (wait_gone(pids, n, 5000))
		return;
	for (int i = 0; i < n; i++)
		if (pid_is_qkm(pids[i]))
			kill(pids[i], SIGKILL);
	(void)wait_gone(pids, n, 5000);
}

/* What stop_all found running and stopped. */
struct stopped {
	int nodes;
	bool sim, ctl;
};

/* Stops every process of the network (stop_pids). */
static struct stopped stop_all(struct qkm_network *net)
{
	int pids[QKM_MAX_NODES + 2], n = 0;
	struct stopped st = {0};
	for (size_t i = 0; i < net->n_nodes; i++)
		if (pid_is_qkm(net->nodes[i].pid))
			pids[n++] = net->nodes[i].pid;
	st.nodes = n;
	if ((st.sim = pid_is_qkm(net->sim_pid)))
		pids[n++] = net->sim_pid;
	if ((st.ctl = pid_is_qkm(net->ctl_pid)))
		pids[n++] = net->ctl_pid;
	stop_pids(pids, n);
	for (size_t i = 0; i < net->n_nodes; i++)
		net->nodes[i].pid = 0;
	net->sim_pid = 0;
	net->ctl_pid = 0;
	return st;
}

static bool net_running(const struct qkm_network *net)
{
	if (pid_is_qkm(net->sim_pid) || pid_is_qkm(net->ctl_pid))
		return true;
	for (size_t i = 0; i < net->n_nodes; i++)
		if (pid_is_qkm(net->nodes[i].pid))
			return true;
	return false;
}

static int absdir(const char *dir, char out[PATH_MAX])
{
	if (mkdirp(dir, 0700) < 0 || !realpath(dir, out)) {
		fprintf(stderr, "qkm net: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

static int issue(const char *pki, const char *role, const char *name, const char *cert,
		 const char *key)
{
	int rc = qkm_ca_issue(pki, role, name, cert, key);
	if (rc)
		fprintf(stderr, "qkm net: cannot issue %s certificate for %s: %s\n", role, name,
			qkm_strerror(rc));
	return rc;
}

struct netplan {
	struct qkm_topology topo;
	struct qkm_sim_cfg sim;
	struct qkm_node_cfg node;
	struct qkm_ctl_cfg ctl;
	struct qkm_network net;
	int kx_port[QKM_MAX_NODES];
};

/* Waits, up to 10 s, until no process holds the key store of the node
 * configured in `config` (qkm node locks its DB-keys file, docs/store.md):
 * a killed node can hold it a moment after it shows as gone, and its
 * successor would refuse to start. */
static void store_wait(const char *config)
{
	struct qkm_node_cfg *c = calloc(1, sizeof(*c));
	char err[256], path[sizeof(c->db) + 8];
	if (!c || qkm_node_cfg_load(config, c, err, sizeof(err))) {
		free(c);
		return; /* the node will say what is wrong */
	}
	snprintf(path, sizeof(path), "%s-keys", c->db);
	free(c);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (int w = 0; w < 200 && flock(fd, LOCK_EX | LOCK_NB) != 0; w++) {
		struct timespec ts = {0, 50000000};
		nanosleep(&ts, NULL);
	}
	(void)close(fd); /* and the lock, if it got it */
}

static int start_node(struct qkm_network *net, size_t i)
{
	char *argv[] = {"qkm", "node", "-c", net->nodes[i].config, NULL};
	store_wait(net->nodes[i].config);
	net->nodes[i].pid = spawn(net->nodes[i].log, argv);
	return net->nodes[i].pid > 0 ? 0 : -1;
}

static int start_sim(struct qkm_network *net)
{
	char *argv[] = {"qkm", "sim", "-c", net->sim_config, NULL};
	net->sim_pid = spawn(net->sim_log, argv);
	return net->sim_pid > 0 ? 0 : -1;
}

/* Waits until the simulator accepts connections on its control socket (what
 * `qkm sim fault` uses), or its process died. */
static int wait_sim(const struct qkm_network *net)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(net->sim_control) >= sizeof(sun.sun_path))
		return -1;
	memcpy(sun.sun_path, net->sim_control, strlen(net->sim_control) + 1);
	for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 100) {
		int st;
		if (waitpid(net->sim_pid, &st, WNOHANG) == net->sim_pid)
			return -1;
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		bool up = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
		(void)close(fd); /* a probe: nothing was sent */
		if (up)
			return 0;
		struct timespec ts = {0, 100000000};
		nanosleep(&ts, NULL);
	}
	return -1;
}

static int start_ctl(struct qkm_network *net)
{
	char *argv[] = {"qkm", "controller", "-c", net->ctl_config, NULL};
	net->ctl_pid = spawn(net->ctl_log, argv);
	return net->ctl_pid > 0 ? 0 : -1;
}

/* Copies the topology file for the controller (checked JSON, atomically). */
static int copy_file(const char *from, const char *to)
{
	FILE *f = fopen(from, "r");
	char *text = malloc(4u << 20);
	size_t n = 0;
	int rc = -1;
	if (f && text) {
		n = fread(text, 1, (4u << 20) - 1, f);
		text[n] = '\0';
		rc = qkm_json_save_text(to, text, 0600) ? -1 : 0;
	}
	if (f)
		(void)fclose(f); /* read only: nothing to lose */
	free(text);
	return rc;
}

static bool has_sae(const struct qkm_topology *t, const char *node)
{
	for (size_t i = 0; i < t->n_saes; i++)
		if (strcmp(t->saes[i].node, node) == 0)
			return true;
	return false;
}

/* The end-to-end pools the network will build by relay (between nodes
 * that both have SAEs), each with its route, as a user reads them. */
static void print_routes(const struct qkm_topology *t)
{
	struct qkm_node_route *r = calloc(QKM_MAX_NODES, sizeof(*r));
	bool first = true;
	for (size_t i = 0; r && i < t->n_nodes; i++) {
		size_t n = 0;
		if (!has_sae(t, t->nodes[i].id) ||
		    qkm_routes_compute(t, t->nodes[i].id, r, QKM_MAX_NODES, &n))
			continue;
		for (size_t j = 0; j < n; j++) {
			if (strcmp(r[j].to, t->nodes[i].id) < 0 || !has_sae(t, r[j].to))
				continue; /* each pair once, from the end whose name sorts first */
			if (first)
				printf("\nrelay (%s%s%s%s), end-to-end pools:\n", t->policy.relay,
				       t->policy.aes_fallback ? ", AES fallback allowed" : "",
				       t->policy.central[0] ? ", central " : "", t->policy.central);
			first = false;
			printf("  ");
			for (uint32_t k = 0; k < r[j].n; k++)
				printf("%s%s", k ? " - " : "", r[j].path[k]);
			printf("\n");
		}
	}
	free(r);
}

static int net_up(const char *topo_path, const char *dir_arg)
{
	struct netplan *p = calloc(1, sizeof(*p));
	char dir[PATH_MAX], path[PATH_MAX + 64], err[512], pki[PATH_MAX + 8];
	int rc = 1;
	if (!p)
		return 1;
	struct qkm_network *net = &p->net;
	if (qkm_topology_load(topo_path, &p->topo, err, sizeof(err))) {
		fprintf(stderr, "qkm net up: %s\n", err);
		free(p);
		return 2;
	}
	for (size_t i = 0; i < p->topo.n_links; i++)
		if (strlen(p->topo.links[i].a) + strlen(p->topo.links[i].b) > 40) {
			fprintf(stderr, "qkm net up: %s: links[%zu]: node names too long for a link name\n",
				topo_path, i);
			free(p);
			return 2;
		}
	for (size_t i = 0; i < p->topo.n_links; i++)
		if (p->topo.links[i].source == QKM_SRC_ETSI014 &&
		    p->topo.links[i].unit_bits > (1u << 20)) {
			fprintf(stderr, "qkm net up: %s: links[%zu]: unit_bits above 1048576 with "
					"source etsi014 (the largest key a node asks a device for)\n",
				topo_path, i);
			free(p);
			return 2;
		}
	/* Relay routes (R-REL-6) are checked before anything is written: a
	 * path longer than QKM_MAX_PATH nodes is a bad topology. */
	for (size_t i = 0; i < p->topo.n_nodes; i++) {
		int e = qkm_routes_compute(&p->topo, p->topo.nodes[i].id, p->node.routes,
					   QKM_MAX_NODES, &p->node.n_routes);
		if (e) {
			fprintf(stderr, "qkm net up: %s: nodes[%zu]: cannot route from '%s': %s "
					"(at most %d nodes on a relay path)\n",
				topo_path, i, p->topo.nodes[i].id, qkm_strerror(e), QKM_MAX_PATH);
			free(p);
			return 2;
		}
	}
	if (absdir(dir_arg, dir))
		goto out;
	/* The simulator's control socket lives in DIR: sun_path is 108 bytes. */
	if (strlen(dir) > 80) {
		fprintf(stderr, "qkm net up: directory path too long (%zu characters; at most 80): %s\n",
			strlen(dir), dir);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/network.json", dir);
	struct qkm_network *old = malloc(sizeof(*old));
	if (old && qkm_network_load(path, old, err, sizeof(err)) == 0 && net_running(old)) {
		fprintf(stderr, "qkm net up: a network is already running in %s; "
				"stop it first with: qkm net down --dir %s\n", dir, dir);
		free(old);
		free(p);
		return 1;
	}
	free(old);
	printf("qkm net up: %zu node(s), %zu link(s), %zu SAE(s) in %s\n", p->topo.n_nodes,
	       p->topo.n_links, p->topo.n_saes, dir);

	/* PKI: one CA per network directory, kept across restarts. */
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	snprintf(net->dir, sizeof(net->dir), "%s", dir);
	snprintf(net->ca, sizeof(net->ca), "%s/ca.pem", pki);
	snprintf(net->admin_cert, sizeof(net->admin_cert), "%s/admin.pem", pki);
	snprintf(net->admin_key, sizeof(net->admin_key), "%s/admin.key", pki);
	if (access(net->ca, R_OK) != 0 && (rc = qkm_ca_create(pki, "qkm-test-ca"))) {
		fprintf(stderr, "qkm net up: cannot create CA in %s: %s\n", pki, qkm_strerror(rc));
		rc = 1;
		goto out;
	}
	rc = 1;
	char sim_cert[PATH_MAX + 16], sim_key[PATH_MAX + 16];
	snprintf(sim_cert, sizeof(sim_cert), "%s/sim.pem", pki);
	snprintf(sim_key, sizeof(sim_key), "%s/sim.key", pki);
	if (issue(pki, "admin", "operator", net->admin_cert, net->admin_key) ||
	    issue(pki, "sim", "sim", sim_cert, sim_key))
		goto out;
	printf("  PKI          %s (CA, %zu node, %zu SAE certificates)\n", pki, p->topo.n_nodes,
	       p->topo.n_saes);

	/* Simulator config: one module pair per link. */
	struct qkm_sim_cfg *sim = &p->sim;
	snprintf(sim->name, sizeof(sim->name), "sim");
	snprintf(sim->log_level, sizeof(sim->log_level), "info");
	snprintf(sim->tls.ca, sizeof(sim->tls.ca), "%s", net->ca);
	snprintf(sim->tls.cert, sizeof(sim->tls.cert), "%s", sim_cert);
	snprintf(sim->tls.key, sizeof(sim->tls.key), "%s", sim_key);
	int sim_port = free_port();
	snprintf(sim->listen, sizeof(sim->listen), "127.0.0.1:%d", sim_port);
	snprintf(path, sizeof(path), "%s/sim", dir);
	mkdirp(path, 0700);
	snprintf(sim->control, sizeof(sim->control), "%s/sim/control.sock", dir);
	sim->backlog_bytes = 16u << 20;
	sim->n_links = p->topo.n_links;
	for (size_t i = 0; i < p->topo.n_links; i++) {
		struct qkm_sim_link *l = &sim->links[i];
		snprintf(l->id, sizeof(l->id), "%s-%s", p->topo.links[i].a, p->topo.links[i].b);
		l->rate_bps = p->topo.links[i].rate_bps;
		l->unit_bits = p->topo.links[i].unit_bits;
		l->qber = p->topo.links[i].qber;
		l->qber_threshold = 0.11;
		snprintf(l->node[0], QKM_NAME_MAX, "%s", p->topo.links[i].a);
		snprintf(l->node[1], QKM_NAME_MAX, "%s", p->topo.links[i].b);
		if (p->topo.links[i].source == QKM_SRC_ETSI014) {
			/* The device's master SAE is side 0, and it must be the
			 * link's leader: the node whose name sorts first. */
			if (strcmp(l->node[0], l->node[1]) > 0) {
				snprintf(l->node[0], QKM_NAME_MAX, "%s", p->topo.links[i].b);
				snprintf(l->node[1], QKM_NAME_MAX, "%s", p->topo.links[i].a);
			}
			snprintf(l->etsi014, sizeof(l->etsi014), "127.0.0.1:%d", free_port());
		}
		for (int k = 0; k < 2; k++) {
			char mod[2 * QKM_NAME_MAX + 2];
			snprintf(mod, sizeof(mod), "%s:%s", l->id, l->node[k]);
			snprintf(l->module[k], QKM_NAME_MAX, "%s", mod);
			/* source spool: the module's driver (the simulator) writes
			 * key files where the node reads them. */
			if (p->topo.links[i].source == QKM_SRC_SPOOL) {
				char sp[PATH_MAX];
				snprintf(sp, sizeof(sp), "%s/%s/spool/%s", dir, l->node[k], l->id);
				memcpy(l->spool[k], sp, sizeof(sp));
			}
		}
	}
	snprintf(net->sim_config, sizeof(net->sim_config), "%s/sim/sim.json", dir);
	snprintf(net->sim_log, sizeof(net->sim_log), "%s/sim/log", dir);
	if (qkm_sim_cfg_save(net->sim_config, sim)) {
		fprintf(stderr, "qkm net up: cannot write %s\n", net->sim_config);
		goto out;
	}
	snprintf(net->sim_control, sizeof(net->sim_control), "%s", sim->control);

	/* Controller and manager: its own certificate from the network CA,
	 * which it also uses to issue SAE certificates. */
	struct qkm_ctl_cfg *cc = &p->ctl;
	memset(cc, 0, sizeof(*cc));
	snprintf(cc->id, sizeof(cc->id), "controller");
	snprintf(path, sizeof(path), "%s/controller", dir);
	mkdirp(path, 0700);
	snprintf(cc->db, sizeof(cc->db), "%s/controller/ledger.db", dir);
	snprintf(cc->log_level, sizeof(cc->log_level), "info");
	snprintf(cc->tls.ca, sizeof(cc->tls.ca), "%s", net->ca);
	snprintf(cc->tls.cert, sizeof(cc->tls.cert), "%s/controller/controller.pem", dir);
	snprintf(cc->tls.key, sizeof(cc->tls.key), "%s/controller/controller.key", dir);
	snprintf(cc->ca_dir, sizeof(cc->ca_dir), "%s", pki);
	snprintf(cc->sae_dir, sizeof(cc->sae_dir), "%s/saes", dir);
	snprintf(cc->ck_listen, sizeof(cc->ck_listen), "127.0.0.1:%d", free_port());
	snprintf(cc->api_listen, sizeof(cc->api_listen), "127.0.0.1:%d", free_port());
	snprintf(cc->topology, sizeof(cc->topology), "%s/controller/topology.json", dir);
	snprintf(cc->mode, sizeof(cc->mode), "%s", p->topo.policy.routing);
	snprintf(net->ctl_config, sizeof(net->ctl_config), "%s/controller/ctl.json", dir);
	snprintf(net->ctl_log, sizeof(net->ctl_log), "%s/controller/log", dir);
	snprintf(net->ctl_api, sizeof(net->ctl_api), "https://%s", cc->api_listen);
	if (issue(pki, "controller", cc->id, cc->tls.cert, cc->tls.key))
		goto out;
	if (copy_file(topo_path, cc->topology) || qkm_ctl_cfg_save(net->ctl_config, cc)) {
		fprintf(stderr, "qkm net up: cannot write %s\n", net->ctl_config);
		goto out;
	}

	/* Node configs. */
	for (size_t i = 0; i < p->topo.n_nodes; i++)
		p->kx_port[i] = free_port();
	net->n_nodes = p->topo.n_nodes;
	for (size_t i = 0; i < p->topo.n_nodes; i++) {
		struct qkm_node_cfg *c = &p->node;
		const char *id = p->topo.nodes[i].id;
		memset(c, 0, sizeof(*c));
		snprintf(c->id, sizeof(c->id), "%s", id);
		snprintf(path, sizeof(path), "%s/%s", dir, id);
		mkdirp(path, 0700);
		snprintf(c->db, sizeof(c->db), "%s/%s/keys.db", dir, id);
		snprintf(c->log_level, sizeof(c->log_level), "info");
		c->ksa = p->topo.nodes[i].ksa;
		c->preserve = strcmp(p->topo.policy.after_supply, "preserve") == 0;
		c->retention_s = p->topo.policy.retention_s;
		snprintf(c->tls.ca, sizeof(c->tls.ca), "%s", net->ca);
		snprintf(c->tls.cert, sizeof(c->tls.cert), "%s/%s/node.pem", dir, id);
		snprintf(c->tls.key, sizeof(c->tls.key), "%s/%s/node.key", dir, id);
		if (issue(pki, "node", id, c->tls.cert, c->tls.key))
			goto out;
		snprintf(c->kx_listen, sizeof(c->kx_listen), "127.0.0.1:%d", p->kx_port[i]);
		snprintf(c->admin_listen, sizeof(c->admin_listen), "127.0.0.1:%d", free_port());
		if (c->ksa)
			snprintf(c->etsi014_listen, sizeof(c->etsi014_listen), "127.0.0.1:%d",
				 free_port());
		snprintf(c->sim, sizeof(c->sim), "%s", sim->listen);
		snprintf(c->controller.addr, sizeof(c->controller.addr), "%s", cc->ck_listen);
		snprintf(c->controller.id, sizeof(c->controller.id), "%s", cc->id);
		for (size_t j = 0; j < p->topo.n_links; j++) {
			const char *a = p->topo.links[j].a, *b = p->topo.links[j].b;
			if (strcmp(a, id) && strcmp(b, id))
				continue;
			const char *peer = strcmp(a, id) == 0 ? b : a;
			struct qkm_node_link *l = &c->links[c->n_links++];
			size_t pi = 0;
			while (strcmp(p->topo.nodes[pi].id, peer))
				pi++;
			snprintf(l->link, sizeof(l->link), "%s", sim->links[j].id);
			snprintf(l->peer, sizeof(l->peer), "%s", peer);
			snprintf(l->addr, sizeof(l->addr), "127.0.0.1:%d", p->kx_port[pi]);
			snprintf(l->module, sizeof(l->module), "%s:%s", sim->links[j].id, id);
			l->kma_unit_bits = 256;
			l->batch_ms = 100;
			l->batch_max_bytes = 1u << 20;
			const struct qkm_sim_link *sl = &sim->links[j];
			if (p->topo.links[j].source == QKM_SRC_SPOOL) {
				l->src.kind = QKM_SRC_SPOOL;
				l->src.poll_ms = 200;
				snprintf(l->src.dir, sizeof(l->src.dir), "%s",
					 sl->spool[strcmp(sl->node[0], id) == 0 ? 0 : 1]);
			} else if (p->topo.links[j].source == QKM_SRC_ETSI014) {
				/* The simulated device's SAEs are the nodes, with their
				 * node certificates; batches of 64 keys, polled every
				 * 100 ms, keep up with the topology's rates. */
				struct qkm_key_source *ks = &l->src;
				ks->kind = QKM_SRC_ETSI014;
				snprintf(ks->url, sizeof(ks->url), "https://%s", sl->etsi014);
				snprintf(ks->sae, sizeof(ks->sae), "%s", id);
				snprintf(ks->peer_sae, sizeof(ks->peer_sae), "%s", peer);
				ks->master = strcmp(sl->node[0], id) == 0;
				ks->tls = c->tls;
				ks->poll_ms = 100;
				ks->batch = 64;
				ks->size_bits = sl->unit_bits;
			}
		}
		for (size_t j = 0; j < p->topo.n_saes; j++)
			c->saes[c->n_saes++] = p->topo.saes[j];
		/* Relay-only nodes too: they are hops on other nodes' routes and
		 * need their own to reach the rest. Checked above, cannot fail. */
		if (qkm_routes_compute(&p->topo, id, c->routes, QKM_MAX_NODES, &c->n_routes))
			goto out;
		for (size_t j = 0; j < p->topo.n_nodes; j++)
			if (j != i) {
				struct qkm_node_dir *d = &c->dir[c->n_dir++];
				snprintf(d->id, sizeof(d->id), "%s", p->topo.nodes[j].id);
				snprintf(d->kx, sizeof(d->kx), "127.0.0.1:%d", p->kx_port[j]);
			}
		struct qkm_relay_cfg *rl = &c->relay;
		snprintf(rl->mode, sizeof(rl->mode), "%s", p->topo.policy.relay);
		snprintf(rl->central, sizeof(rl->central), "%s", p->topo.policy.central);
		rl->aes_fallback = p->topo.policy.aes_fallback;
		rl->rng = strcmp(p->topo.policy.key_source, "rng") == 0;
		qkm_relay_defaults(rl);
		c->limits = p->topo.policy.limits;
		snprintf(net->nodes[i].id, QKM_NAME_MAX, "%s", id);
		snprintf(net->nodes[i].admin, sizeof(net->nodes[i].admin), "https://%s", c->admin_listen);
		if (c->ksa)
			snprintf(net->nodes[i].etsi014, sizeof(net->nodes[i].etsi014), "https://%s",
				 c->etsi014_listen);
		snprintf(net->nodes[i].config, sizeof(net->nodes[i].config), "%s/%s/node.json", dir, id);
		snprintf(net->nodes[i].log, sizeof(net->nodes[i].log), "%s/%s/log", dir, id);
		if (qkm_node_cfg_save(net->nodes[i].config, c)) {
			fprintf(stderr, "qkm net up: cannot write %s\n", net->nodes[i].config);
			goto out;
		}
	}
	net->n_saes = p->topo.n_saes;
	snprintf(path, sizeof(path), "%s/saes", dir);
	mkdirp(path, 0700);
	for (size_t i = 0; i < p->topo.n_saes; i++) {
		snprintf(net->saes[i].id, QKM_NAME_MAX, "%s", p->topo.saes[i].id);
		snprintf(net->saes[i].node, QKM_NAME_MAX, "%s", p->topo.saes[i].node);
		snprintf(net->saes[i].cert, sizeof(net->saes[i].cert), "%s/saes/%s.pem", dir,
			 p->topo.saes[i].id);
		snprintf(net->saes[i].key, sizeof(net->saes[i].key), "%s/saes/%s.key", dir,
			 p->topo.saes[i].id);
		if (issue(pki, "sae", net->saes[i].id, net->saes[i].cert, net->saes[i].key))
			goto out;
	}

	/* Processes. network.json is written first so `net down` can always
	 * clean up, then rewritten with the pids. */
	snprintf(path, sizeof(path), "%s/network.json", dir);
	if (start_ctl(net)) {
		fprintf(stderr, "qkm net up: cannot start the controller\n");
		goto out;
	}
	struct cli_progress prog;
	if (qkm_network_save(path, net)) {
		fprintf(stderr, "qkm net up: cannot write %s\n", path);
		goto fail;
	}
	cli_progress_start(&prog, "  controller   starting (pid %d)", net->ctl_pid);
	int ctl_rc = wait_url(net, net->ctl_api, net->ctl_pid);
	cli_progress_stop(&prog);
	if (ctl_rc) {
		fprintf(stderr, "qkm net up: the controller did not become ready; last lines of %s:\n",
			net->ctl_log);
		print_log_tail(net->ctl_log);
		goto fail;
	}
	printf("  controller   pid %d, API %s, log %s\n", net->ctl_pid, net->ctl_api, net->ctl_log);
	if (start_sim(net)) {
		fprintf(stderr, "qkm net up: cannot start the simulator\n");
		goto fail;
	}
	cli_progress_start(&prog, "  simulator    starting (pid %d)", net->sim_pid);
	int sim_rc = wait_sim(net);
	cli_progress_stop(&prog);
	if (sim_rc) {
		fprintf(stderr, "qkm net up: the simulator did not answer on %s; last lines of %s:\n",
			net->sim_control, net->sim_log);
		print_log_tail(net->sim_log);
		goto fail;
	}
	printf("  simulator    pid %d, %zu link(s), log %s\n", net->sim_pid, sim->n_links, net->sim_log);
	for (size_t i = 0; i < net->n_nodes; i++)
		if (start_node(net, i)) {
			fprintf(stderr, "qkm net up: cannot start node %s\n", net->nodes[i].id);
			goto fail;
		}
	if (qkm_network_save(path, net)) {
		fprintf(stderr, "qkm net up: cannot write %s\n", path);
		goto fail;
	}
	for (size_t i = 0; i < net->n_nodes; i++) {
		printf("  node %-8s starting (pid %d) ... ", net->nodes[i].id, net->nodes[i].pid);
		(void)fflush(stdout); /* progress only */
		cli_progress_start(&prog, "%s", ""); /* the seconds waited, after "... " */
		int ready_rc = wait_ready(net, i);
		cli_progress_stop(&prog);
		if (ready_rc) {
			printf("FAILED\n");
			fprintf(stderr, "qkm net up: node %s did not become ready; last lines of %s:\n",
				net->nodes[i].id, net->nodes[i].log);
			print_log_tail(net->nodes[i].log);
			goto fail;
		}
		printf("ready\n");
	}
	printf("\n%-10s %-8s %-28s %-28s\n", "NODE", "PID", "ETSI 014", "ADMIN");
	for (size_t i = 0; i < net->n_nodes; i++)
		printf("%-10s %-8d %-28s %-28s\n", net->nodes[i].id, net->nodes[i].pid,
		       net->nodes[i].etsi014[0] ? net->nodes[i].etsi014 : "- (relay only)",
		       net->nodes[i].admin);
	print_routes(&p->topo);
	printf("\nnetwork file: %s\nstatus:       qkm ctl status --dir %s\nstop:         qkm net down --dir %s\n",
	       path, dir, dir);
	rc = 0;
	goto out;
fail:
	(void)stop_all(net);
	if (qkm_network_save(path, net))
		fprintf(stderr, "qkm net up: cannot update %s\n", path);
out:
	free(p);
	return rc;
}

static int load_net(const char *dir, struct qkm_network *net, char *path, size_t pathsz)
{
	snprintf(path, pathsz, "%s/network.json", dir);
	return cli_network_load("qkm net", dir, net);
}

static int net_down(const char *dir)
{
	char path[PATH_MAX + 16];
	struct qkm_network *net = malloc(sizeof(*net));
	if (!net)
		return 1;
	snprintf(path, sizeof(path), "%s/network.json", dir);
	if (access(path, F_OK) != 0) {
		printf("qkm net down: no network in %s\n", dir);
		free(net);
		return 0;
	}
	if (load_net(dir, net, path, sizeof(path))) {
		free(net);
		return 1;
	}
	struct cli_progress prog;
	cli_progress_start(&prog, "qkm net down: stopping the processes of %s", dir);
	struct stopped st = stop_all(net);
	cli_progress_stop(&prog);
	int rc = qkm_network_save(path, net) ? 1 : 0;
	if (!st.nodes && !st.sim && !st.ctl)
		printf("qkm net down: nothing was running in %s\n", dir);
	else
		printf("qkm net down: stopped %d node(s)%s%s in %s\n", st.nodes,
		       st.sim ? (st.ctl ? ", the simulator" : " and the simulator") : "",
		       st.ctl ? " and the controller" : "", dir);
	free(net);
	return rc;
}

/* Stops pid if it is a qkm process (stop_pids), showing so on a terminal. */
static void stop_wait(int pid, const char *name)
{
	struct cli_progress prog;
	if (!pid_is_qkm(pid))
		return;
	cli_progress_start(&prog, "%s: stopping (pid %d)", name, pid);
	stop_pids(&pid, 1);
	cli_progress_stop(&prog);
}

/* Waits until the admin API at base answers (a restarted daemon), showing
 * so on a terminal; on failure says so with the last lines of its log. */
static int restart_wait(const struct qkm_network *net, const char *base, int pid, const char *name,
			const char *log)
{
	struct cli_progress prog;
	cli_progress_start(&prog, "%s: starting (pid %d), waiting until it answers", name, pid);
	int rc = wait_url(net, base, pid);
	cli_progress_stop(&prog);
	if (rc) {
		fprintf(stderr, "qkm net restart: %s did not become ready within %d s; last lines of %s:\n",
			name, READY_TIMEOUT_MS / 1000, log);
		print_log_tail(log);
	}
	return rc;
}

static int net_restart(const char *dir, const char *name)
{
	char path[PATH_MAX + 16], label[QKM_NAME_MAX + 16];
	struct qkm_network *net = malloc(sizeof(*net));
	int rc = 1;
	if (!net || load_net(dir, net, path, sizeof(path)))
		goto out;
	if (strcmp(name, "sim") == 0) {
		/* Its port and control socket are free once it is gone. */
		stop_wait(net->sim_pid, "simulator");
		if (start_sim(net)) {
			fprintf(stderr, "qkm net restart: cannot start the simulator (configuration %s); "
					"see %s\n", net->sim_config, net->sim_log);
			goto out;
		}
		if (qkm_network_save(path, net)) {
			fprintf(stderr, "qkm net restart: cannot write %s\n", path);
			goto out;
		}
		struct cli_progress prog;
		cli_progress_start(&prog, "simulator: starting (pid %d), waiting until it answers",
				   net->sim_pid);
		int sim_rc = wait_sim(net);
		cli_progress_stop(&prog);
		if (sim_rc) {
			fprintf(stderr, "qkm net restart: the simulator did not answer on %s within %d s; "
					"last lines of %s:\n",
				net->sim_control, READY_TIMEOUT_MS / 1000, net->sim_log);
			print_log_tail(net->sim_log);
			goto out;
		}
		printf("simulator restarted (pid %d)\n", net->sim_pid);
		rc = 0;
		goto out;
	}
	if (strcmp(name, "controller") == 0 && net->ctl_api[0]) {
		stop_wait(net->ctl_pid, "controller");
		if (start_ctl(net)) {
			fprintf(stderr, "qkm net restart: cannot start the controller (configuration %s); "
					"see %s\n", net->ctl_config, net->ctl_log);
			goto out;
		}
		if (qkm_network_save(path, net)) {
			fprintf(stderr, "qkm net restart: cannot write %s\n", path);
			goto out;
		}
		if (restart_wait(net, net->ctl_api, net->ctl_pid, "the controller", net->ctl_log))
			goto out;
		printf("controller restarted (pid %d)\n", net->ctl_pid);
		rc = 0;
		goto out;
	}
	for (size_t i = 0; i < net->n_nodes; i++) {
		if (strcmp(net->nodes[i].id, name) != 0)
			continue;
		snprintf(label, sizeof(label), "node %s", name);
		stop_wait(net->nodes[i].pid, label);
		if (start_node(net, i)) {
			fprintf(stderr, "qkm net restart: cannot start node %s (configuration %s); see %s\n",
				name, net->nodes[i].config, net->nodes[i].log);
			goto out;
		}
		if (qkm_network_save(path, net)) {
			fprintf(stderr, "qkm net restart: cannot write %s\n", path);
			goto out;
		}
		if (restart_wait(net, net->nodes[i].admin, net->nodes[i].pid, label, net->nodes[i].log))
			goto out;
		printf("node %s restarted (pid %d)\n", name, net->nodes[i].pid);
		rc = 0;
		goto out;
	}
	fprintf(stderr, "qkm net restart: no node named '%s' in %s; restart one of ", name, dir);
	cli_print_nodes(stderr, net);
	fprintf(stderr, ", sim%s\n", net->ctl_api[0] ? ", controller" : "");
out:
	free(net);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm net up TOPOLOGY.json --dir DIR\n"
		   "       qkm net down --dir DIR\n"
		   "       qkm net restart --dir DIR NODE|sim|controller\n");
}

int cli_net(int argc, char **argv)
{
	const char *dir = NULL, *pos = NULL;
	qkm_log_init("qkm net", QKM_LOG_ERROR);
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (!pos && argv[i][0] != '-')
			pos = argv[i];
		else {
			usage(stderr);
			return 2;
		}
	}
	if (!dir) {
		usage(stderr);
		return 2;
	}
	(void)signal(SIGPIPE, SIG_IGN); /* fails only for an invalid signal */
	if (strcmp(argv[1], "up") == 0 && pos)
		return net_up(pos, dir);
	if (strcmp(argv[1], "down") == 0 && !pos)
		return net_down(dir);
	if (strcmp(argv[1], "restart") == 0 && pos)
		return net_restart(dir, pos);
	usage(stderr);
	return 2;
}
