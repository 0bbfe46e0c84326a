/**
 * Dataset limits that Amazon Bedrock documents for model customization (fine-tuning text-to-text models with
 * `{"prompt": ..., "completion": ...}` JSONL records).
 *
 * Source for the token, character and file-size numbers: "Model requirements for training and validation
 * datasets" in the Amazon Bedrock User Guide,
 * https://docs.aws.amazon.com/bedrock/latest/userguide/model-training-validation-requirements.html
 * (the Amazon Titan Text tables, fine-tuning column):
 *   - Sum of input and output tokens when batch size is 1 ............ 4,096
 *     (2,048 for Titan Text G1 - Express at batch size 2-4, and for Titan Text G1 - Lite at batch size 3-6)
 *   - Character quota per sample in dataset ......................... token quota x 6
 *   - Training dataset file size ...................................... 1 GB (10 GB for continued pre-training)
 *   - Validation dataset file size .................................... 100 MB
 * The limits are per base model; other models (Llama, Cohere, Nova) have their own rows, so every number
 * here can be overridden from the command line.
 *
 * Record count: the guide points to the adjustable "Sum of training and validation records" service quotas
 * in "Amazon Bedrock endpoints and quotas" (AWS General Reference,
 * https://docs.aws.amazon.com/general/latest/gr/bedrock.html). The numeric value was NOT available in the
 * material this was written from; 10,000 is the commonly cited default for Titan Text fine-tuning jobs and is
 * used as an unverified default. Check the quota in your account (Service Quotas console) and pass
 * --max-records.
 */
export const BEDROCK_LIMITS = {
  /** Sum of prompt and completion tokens per record (Titan Text, fine-tuning, batch size 1). */
  maxTokensPerRecord: 4096,
  /** Characters per record = token quota x 6. */
  charsPerToken: 6,
  /** Training dataset file size for fine-tuning: 1 GB (read as 10^9 bytes, the stricter reading). */
  maxTrainingFileBytes: 1_000_000_000,
  /** Validation dataset file size: 100 MB (10^8 bytes). */
  maxValidationFileBytes: 100_000_000,
  /** Sum of training and validation records: unverified default, see above. */
  maxRecords: 10_000,
} as const;

export const BEDROCK_LIMITS_SOURCE = 'https://docs.aws.amazon.com/bedrock/latest/userguide/model-training-validation-requirements.html';
