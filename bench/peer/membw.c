// Read bandwidth probe for bench/peer: sums a float array of MIB MiB with THREADS OpenMP threads, REPS passes;
// each thread reads its share as STREAMS interleaved streams (STREAMS separate regions advanced together, the
// way a matrix-vector product reads several weight rows at once; 1 = one sequential stream per thread).
// Prints best, median and worst GB/s (1 GB = 1e9 bytes).
//   cc -O3 -march=native -ffast-math -fopenmp membw.c -o membw && ./membw 1024 2 8 10
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <omp.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
  int threads = argc > 2 ? atoi(argv[2]) : 2;
  int streams = argc > 3 ? atoi(argv[3]) : 8;
  int reps = argc > 4 ? atoi(argv[4]) : 10;
  if (streams < 1) streams = 1;
  if (streams > 16) streams = 16;
  if (reps < 1) reps = 1;
  if (reps > 100) reps = 100;
  size_t n = mib * 1024 * 1024 / sizeof(float);
  float *a = aligned_alloc(64, n * sizeof(float));
  if (!a) { fprintf(stderr, "out of memory\n"); return 1; }
  omp_set_num_threads(threads);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023) * 1e-3f;
  double gbs[100], total = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    float sum = 0;
#pragma omp parallel reduction(+ : sum)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      size_t per = n / T, base = t * per, len = per / streams / 16 * 16;
      float acc[16][16] = {{0}};
      for (size_t i = 0; i < len; i += 16)
        for (int s = 0; s < streams; s++)
          for (int j = 0; j < 16; j++) acc[s][j] += a[base + s * len + i + j];
      for (int s = 0; s < streams; s++)
        for (int j = 0; j < 16; j++) sum += acc[s][j];
    }
    double dt = now() - t0;
    total += sum;
    // bytes actually read: every thread reads streams * len floats
    size_t per = n / threads, len = per / streams / 16 * 16;
    gbs[r] = (double)threads * streams * len * sizeof(float) / dt / 1e9;
  }
  qsort(gbs, reps, sizeof(double), cmp);
  printf("read %zu MiB, %d thread(s), %d stream(s)/thread, %d passes: best %.2f GB/s, median %.2f GB/s, worst %.2f GB/s (checksum %g)\n",
         mib, threads, streams, reps, gbs[reps - 1], gbs[reps / 2], gbs[0], total);
  free(a);
  return 0;
}
