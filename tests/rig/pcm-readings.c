/* pcm-readings: what an ALSA PCM says about its position, read as a player reads it.
 *
 * Plays silence to PCM with a 100 ms buffer kept full, and every 5-6 ms reads its status
 * between two reads of CLOCK_MONOTONIC. Prints one line per reading:
 *   <ns before> <ns after> <frames consumed: written less the delay>
 * Usage: pcm-readings PCM SECONDS   Build: cc -O2 -o pcm-readings pcm-readings.c -lasound
 */
#include <alsa/asoundlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: pcm-readings PCM SECONDS\n"); return 2; }
    snd_pcm_t *pcm;
    int err = snd_pcm_open(&pcm, argv[1], SND_PCM_STREAM_PLAYBACK, 0);
    if (err < 0) { fprintf(stderr, "pcm-readings: %s: %s\n", argv[1], snd_strerror(err)); return 1; }
    err = snd_pcm_set_params(pcm, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED, 2, 48000, 0,
                             100000);
    if (err < 0) { fprintf(stderr, "pcm-readings: set_params: %s\n", snd_strerror(err)); return 1; }
    static int16_t silence[2 * 4800];
    snd_pcm_status_t *st;
    snd_pcm_status_alloca(&st);
    long long written = 0, end = now_ns() + (long long)(atof(argv[2]) * 1e9);
    srand(1);
    while (now_ns() < end) {
        snd_pcm_sframes_t avail = snd_pcm_avail_update(pcm);
        if (avail < 0) {
            fprintf(stderr, "pcm-readings: %s\n", snd_strerror((int)avail));
            snd_pcm_prepare(pcm);
            continue;
        }
        if (avail > 0) {
            snd_pcm_sframes_t w = snd_pcm_writei(pcm, silence, avail > 4800 ? 4800 : avail);
            if (w > 0) written += w;
        }
        long long before = now_ns();
        err = snd_pcm_status(pcm, st);
        long long after = now_ns();
        if (err == 0)
            printf("%lld %lld %lld\n", before, after, written - (long long)snd_pcm_status_get_delay(st));
        struct timespec nap = {0, 5000000 + (rand() % 1000) * 1000};
        nanosleep(&nap, NULL);
    }
    snd_pcm_close(pcm);
    return 0;
}
