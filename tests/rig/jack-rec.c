/* jack-rec: records JACK input ports to one WAV file per speaker, every speaker's frames from
 * the same process cycle, so their relative timing is exact to the sample.
 *
 * Usage: jack-rec DIR SECONDS NAME...   (registers NAME_1 and NAME_2 inputs per name; writes
 *        DIR/NAME.wav, 16-bit stereo at the server's rate, and DIR/NAME.heard, the common
 *        timeline in the sim output's heard-log format, so tests/rig's skew tool reads them)
 * Ends after SECONDS or on SIGINT/SIGTERM. Build: gcc -O2 -o jack-rec jack-rec.c -ljack
 */
#include <jack/jack.h>
#include <jack/ringbuffer.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXSPK 8
static jack_client_t *client;
static jack_port_t *ports[MAXSPK * 2];
static jack_ringbuffer_t *ring;
static int nports;
static volatile sig_atomic_t done;
static volatile long overruns;

static int process(jack_nframes_t n, void *arg) {
    (void)arg;
    float *in[MAXSPK * 2];
    for (int p = 0; p < nports; p++) in[p] = jack_port_get_buffer(ports[p], n);
    size_t need = (size_t)n * nports * sizeof(int16_t);
    if (jack_ringbuffer_write_space(ring) < need) { overruns++; return 0; }
    for (jack_nframes_t i = 0; i < n; i++) {
        int16_t frame[MAXSPK * 2];
        for (int p = 0; p < nports; p++) {
            float v = roundf(in[p][i] * 32768.0f);
            frame[p] = v > 32767.0f ? 32767 : v < -32768.0f ? -32768 : (int16_t)v;
        }
        jack_ringbuffer_write(ring, (const char *)frame, nports * sizeof(int16_t));
    }
    return 0;
}

static void stop(int sig) { (void)sig; done = 1; }

static void le32(FILE *f, uint32_t v) { uint8_t b[4] = {v, v >> 8, v >> 16, v >> 24}; fwrite(b, 1, 4, f); }
static void le16(FILE *f, uint16_t v) { uint8_t b[2] = {v, v >> 8}; fwrite(b, 1, 2, f); }
static void header(FILE *f, uint32_t rate, uint32_t frames) {
    fwrite("RIFF", 1, 4, f); le32(f, 36 + frames * 4); fwrite("WAVEfmt ", 1, 8, f);
    le32(f, 16); le16(f, 1); le16(f, 2); le32(f, rate); le32(f, rate * 4); le16(f, 4); le16(f, 16);
    fwrite("data", 1, 4, f); le32(f, frames * 4);
}

int main(int argc, char **argv) {
    if (argc < 4 || argc - 3 > MAXSPK) { fprintf(stderr, "usage: jack-rec DIR SECONDS NAME...\n"); return 2; }
    const char *dir = argv[1];
    double seconds = atof(argv[2]);
    int nspk = argc - 3;
    nports = nspk * 2;
    client = jack_client_open("rec", JackNoStartServer, NULL);
    if (!client) { fprintf(stderr, "jack-rec: no JACK server\n"); return 1; }
    uint32_t rate = jack_get_sample_rate(client);
    for (int s = 0; s < nspk; s++)
        for (int c = 0; c < 2; c++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%d", argv[3 + s], c + 1);
            ports[s * 2 + c] = jack_port_register(client, name, JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
            if (!ports[s * 2 + c]) { fprintf(stderr, "jack-rec: cannot register %s\n", name); return 1; }
        }
    ring = jack_ringbuffer_create((size_t)rate * nports * sizeof(int16_t) * 4);
    FILE *out[MAXSPK];
    for (int s = 0; s < nspk; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.heard", dir, argv[3 + s]);
        FILE *h = fopen(path, "w");
        if (!h) { perror(path); return 1; }
        fprintf(h, "start dac_frame=0 realtime_ns=0 rate_hz=%u.000000\n", rate);
        fclose(h);
        snprintf(path, sizeof path, "%s/%s.wav", dir, argv[3 + s]);
        out[s] = fopen(path, "wb");
        if (!out[s]) { perror(path); return 1; }
        header(out[s], rate, 0);
    }
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    jack_set_process_callback(client, process, NULL);
    if (jack_activate(client)) { fprintf(stderr, "jack-rec: cannot activate\n"); return 1; }
    printf("jack-rec: recording %d speakers at %u Hz\n", nspk, rate);
    fflush(stdout);
    uint64_t frames = 0, limit = (uint64_t)(seconds * rate);
    int16_t buf[MAXSPK * 2];
    while (frames < limit) {
        size_t fb = nports * sizeof(int16_t);
        while (jack_ringbuffer_read_space(ring) >= fb && frames < limit) {
            jack_ringbuffer_read(ring, (char *)buf, fb);
            for (int s = 0; s < nspk; s++) fwrite(&buf[s * 2], sizeof(int16_t), 2, out[s]);
            frames++;
        }
        if (done) break;
        usleep(20000);
    }
    jack_deactivate(client);
    jack_client_close(client);
    for (int s = 0; s < nspk; s++) {
        fseek(out[s], 0, SEEK_SET);
        header(out[s], rate, (uint32_t)frames);
        fclose(out[s]);
    }
    printf("jack-rec: %llu frames, %ld overruns\n", (unsigned long long)frames, overruns);
    return overruns ? 1 : 0;
}
