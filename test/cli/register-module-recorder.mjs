import { register } from 'node:module';

register('./module-recorder.mjs', import.meta.url);
