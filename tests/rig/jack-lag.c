// jack-lag: how late in each JACK cycle a speaker's ALSA `jack` plugin moves its pointer.
//
// Preloaded into a speaker (LD_PRELOAD, device-bench does it), it wraps the process callback
// the plugin registers: after the plugin's own callback returns (it has copied the period and
// moved its pointer), it takes the time since the cycle began (jack_get_cycle_times, the
// server's estimate of the cycle's start, the same for every client of the graph) and appends
// one line per 1000 cycles to $CHORUS_JACK_LAG: "mean_us sd_us min_us cycles".
//
// Why: one JACK server runs its clients one after the other (or on the other CPU, after a
// wake-up), so two speakers on one graph see their pointers move at different moments of
// the same cycle. A speaker can only believe its pointer, so the one whose pointer moves
// later places the same frame earlier by the difference: a bias of the rig (two boxes share
// no graph) that this measures beside the skew.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <jack/jack.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_WRAPS 8
#define CYCLES 1000

struct wrap {
    JackProcessCallback callback;
    void *arg;
    jack_client_t *client;
    double sum, sum2, min;
    long n;
    int fd;
};

static struct wrap wraps[MAX_WRAPS];
static int nwraps;

static int process(jack_nframes_t nframes, void *p) {
    struct wrap *w = p;
    int rc = w->callback(nframes, w->arg);
    jack_nframes_t frames;
    jack_time_t start, next;
    float period;
    if (jack_get_cycle_times(w->client, &frames, &start, &next, &period) != 0) return rc;
    double lag = (double)(int64_t)(jack_get_time() - start); // the estimate can lie ahead
    w->sum += lag;
    w->sum2 += lag * lag;
    if (w->n == 0 || lag < w->min) w->min = lag;
    if (++w->n == CYCLES) {
        double mean = w->sum / w->n;
        double var = w->sum2 / w->n - mean * mean;
        // One short write a second or so from the real-time thread: acceptable in a rig.
        dprintf(w->fd, "%.2f %.2f %.0f %ld\n", mean, sqrt(var > 0 ? var : 0), w->min, w->n);
        w->sum = w->sum2 = 0;
        w->n = 0;
    }
    return rc;
}

int jack_set_process_callback(jack_client_t *client, JackProcessCallback callback, void *arg) {
    static int (*real)(jack_client_t *, JackProcessCallback, void *);
    if (!real) real = (int (*)(jack_client_t *, JackProcessCallback, void *))dlsym(RTLD_NEXT, "jack_set_process_callback");
    if (!real) return -1;
    const char *path = getenv("CHORUS_JACK_LAG");
    if (!path || nwraps == MAX_WRAPS) return real(client, callback, arg);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return real(client, callback, arg);
    struct wrap *w = &wraps[nwraps++];
    *w = (struct wrap){.callback = callback, .arg = arg, .client = client, .fd = fd};
    return real(client, process, w);
}
